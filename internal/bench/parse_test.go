package bench

import "testing"

func TestParseIperf3(t *testing.T) {
	tests := []struct {
		name, in string
		want     float64
		wantErr  bool
	}{
		{"ok", `{"end":{"sum_received":{"bits_per_second":2.5e9,"seconds":10.0}}}`, 2.5e9, false},
		{"iperf error", `{"error":"unable to connect to server"}`, 0, true},
		{"no data", `{"end":{"sum_received":{"bits_per_second":0,"seconds":0}}}`, 0, true},
		{"negative", `{"end":{"sum_received":{"bits_per_second":-5,"seconds":10}}}`, 0, true},
		{"not json", `iperf3: error`, 0, true},
		{"empty", ``, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseIperf3([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("ParseIperf3 = %v, %v; want %v, err=%v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseVmHWM(t *testing.T) {
	tests := []struct {
		name, in string
		want     int64
		wantErr  bool
	}{
		{"ok", "Name:\tx\nVmPeak:\t 100 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1 kB\n", 2048 << 10, false},
		{"missing", "Name:\tkthreadd\n", 0, true},
		{"bad unit", "VmHWM:\t 12 MB\n", 0, true},
		{"bad number", "VmHWM:\t x kB\n", 0, true},
		{"negative", "VmHWM:\t -1 kB\n", 0, true},
		{"huge", "VmHWM:\t 99999999999999999999 kB\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseVmHWM([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("ParseVmHWM = %v, %v; want %v, err=%v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func FuzzParseIperf3(f *testing.F) {
	f.Add([]byte(`{"end":{"sum_received":{"bits_per_second":2.5e9,"seconds":10.0}}}`))
	f.Add([]byte(`{"error":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		bps, err := ParseIperf3(b)
		if err == nil && !(bps > 0) {
			t.Fatalf("accepted non-positive rate %v", bps)
		}
	})
}

func FuzzParseVmHWM(f *testing.F) {
	f.Add([]byte("VmHWM:\t 2048 kB\n"))
	f.Add([]byte("Name: x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ParseVmHWM(b)
		if err == nil && n < 0 {
			t.Fatalf("accepted negative size %d", n)
		}
	})
}
