package dns

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseLeases(t *testing.T) {
	in := strings.Join([]string{
		"1767225600 aa:bb:cc:dd:ee:01 198.19.1.10 NAS 01:aa:bb:cc:dd:ee:01",
		"0 aa:bb:cc:dd:ee:02 198.19.1.11 Johns_iPhone.lan *",
		"1767225600 aa:bb:cc:dd:ee:03 198.19.1.12 * *",
		"duid 00:01:00:01:2c:aa:bb:cc:aa:bb:cc:dd:ee:ff",
		"1767225600 12345678 2001:db8:1::10 nas 00:01:00:01",
		"garbage",
		"notanumber aa:bb:cc:dd:ee:04 198.19.1.13 x *",
		"1767225600 zz:zz 198.19.1.14 x *",
		"1767225600 aa:bb:cc:dd:ee:05 198.19.1.999 x *",
		"1767225600 aa:bb:cc:dd:ee:06 198.19.1.15 x * extra",
		"",
	}, "\n")
	got, err := ParseLeases(strings.NewReader(in))
	want := []Lease{
		{Expiry: time.Unix(1767225600, 0), HWAddr: "aa:bb:cc:dd:ee:01", Addr: netip.MustParseAddr("198.19.1.10"), Hostname: "nas"},
		{HWAddr: "aa:bb:cc:dd:ee:02", Addr: netip.MustParseAddr("198.19.1.11"), Hostname: "johns-iphone"},
		{Expiry: time.Unix(1767225600, 0), HWAddr: "aa:bb:cc:dd:ee:03", Addr: netip.MustParseAddr("198.19.1.12")},
		{Expiry: time.Unix(1767225600, 0), HWAddr: "12345678", Addr: netip.MustParseAddr("2001:db8:1::10"), Hostname: "nas"},
	}
	if !slices.EqualFunc(got, want, func(a, b Lease) bool {
		return a.Expiry.Equal(b.Expiry) && a.HWAddr == b.HWAddr && a.Addr == b.Addr && a.Hostname == b.Hostname
	}) {
		t.Errorf("leases\n got %+v\nwant %+v", got, want)
	}
	if err == nil {
		t.Fatal("malformed lines gave no error")
	}
	for _, frag := range []string{"line 6: want 5 fields", "line 7: expiry \"notanumber\"", "line 8: hardware address", "line 9: address \"198.19.1.999\"", "line 10: want 5 fields"} {
		if !strings.Contains(err.Error(), frag) {
			t.Errorf("error %q lacks %q", err, frag)
		}
	}
}

func TestParseLeasesLongLine(t *testing.T) {
	in := "0 aa:bb 198.19.1.1 a *\n" + strings.Repeat("x", 5000) + "\n"
	got, err := ParseLeases(strings.NewReader(in))
	if len(got) != 1 || err == nil {
		t.Fatalf("got %v, %v; want the first lease and an error", got, err)
	}
}

func TestSanitizeLabel(t *testing.T) {
	tests := map[string]string{
		"NAS":                   "nas",
		"Johns iPhone":          "johns-iphone",
		"a  --  b":              "a-b",
		"\xff\xfe":              "",
		"host.lan":              "host",
		"--edge--":              "edge",
		"émoji💥box":             "moji-box",
		"":                      "",
		"***":                   "",
		".hidden":               "",
		strings.Repeat("a", 80): strings.Repeat("a", 63),
		"under_score":           "under-score",
	}
	for in, want := range tests {
		got := SanitizeLabel(in)
		if got != want {
			t.Errorf("SanitizeLabel(%q) = %q, want %q", in, got, want)
		}
		if got != "" {
			if err := checkLabel(got); err != nil {
				t.Errorf("SanitizeLabel(%q) = %q is not a label: %v", in, got, err)
			}
		}
	}
}

func TestLeaseRecords(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	leases := []Lease{
		{Expiry: now.Add(time.Hour), Addr: netip.MustParseAddr("198.19.1.10"), Hostname: "nas"},
		{Expiry: now.Add(time.Hour), Addr: netip.MustParseAddr("2001:db8:1::10"), Hostname: "nas"},
		{Addr: netip.MustParseAddr("198.19.1.11"), Hostname: "printer"},                            // never expires
		{Expiry: now.Add(-time.Second), Addr: netip.MustParseAddr("198.19.1.12"), Hostname: "old"}, // expired
		{Expiry: now.Add(time.Hour), Addr: netip.MustParseAddr("198.19.1.13")},                     // no name
	}
	got := LeaseRecords(leases, "Router A", now)
	want := []Record{
		{Name: "nas.router-a", Addrs: []netip.Addr{netip.MustParseAddr("198.19.1.10"), netip.MustParseAddr("2001:db8:1::10")}},
		{Name: "printer.router-a", Addrs: []netip.Addr{netip.MustParseAddr("198.19.1.11")}},
	}
	if !slices.EqualFunc(got, want, func(a, b Record) bool { return a.Name == b.Name && slices.Equal(a.Addrs, b.Addrs) }) {
		t.Errorf("got %v, want %v", got, want)
	}
	// The records are accepted by the server as they are.
	c := baseConfig()
	c.LeaseRecords = got
	if _, warns, err := compile(c, 1); err != nil || len(warns) != 0 {
		t.Errorf("compile lease records: %v %v", warns, err)
	}
}

func TestParseReverse(t *testing.T) {
	tests := []struct {
		name  string
		p     string
		clean bool
		ok    bool
	}{
		{"1.0.64.100.in-addr.arpa.", "100.64.0.1/32", true, true},
		{"64.100.in-addr.arpa.", "100.64.0.0/16", true, true},
		{"in-addr.arpa.", "0.0.0.0/0", true, true},
		{"x.64.100.in-addr.arpa.", "100.64.0.0/16", false, true},
		{"01.64.100.in-addr.arpa.", "100.64.0.0/16", false, true},
		{"256.64.100.in-addr.arpa.", "100.64.0.0/16", false, true},
		{"9.1.0.64.100.in-addr.arpa.", "100.64.0.1/32", false, true},
		{"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa.", "fd7a:115c:a1e0::1/128", true, true},
		{"0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa.", "fd7a:115c:a1e0::/48", true, true},
		{"g.0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa.", "fd7a:115c:a1e0::/48", false, true},
		{"example.com.", "", false, false},
		{"arpa.", "", false, false},
	}
	for _, tc := range tests {
		p, clean, ok := parseReverse(tc.name)
		if ok != tc.ok || (ok && (p.String() != tc.p || clean != tc.clean)) {
			t.Errorf("parseReverse(%q) = %v %v %v, want %s %v %v", tc.name, p, clean, ok, tc.p, tc.clean, tc.ok)
		}
	}
}
