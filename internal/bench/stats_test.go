package bench

import (
	"strings"
	"testing"
)

func TestSample(t *testing.T) {
	tests := []struct {
		s                Sample
		median, min, max float64
	}{
		{nil, 0, 0, 0},
		{Sample{3}, 3, 3, 3},
		{Sample{5, 1, 3}, 3, 1, 5},
		{Sample{4, 1, 3, 2}, 2.5, 1, 4},
	}
	for _, tt := range tests {
		if g := tt.s.Median(); g != tt.median {
			t.Errorf("%v.Median() = %v, want %v", tt.s, g, tt.median)
		}
		if g := tt.s.Min(); g != tt.min {
			t.Errorf("%v.Min() = %v, want %v", tt.s, g, tt.min)
		}
		if g := tt.s.Max(); g != tt.max {
			t.Errorf("%v.Max() = %v, want %v", tt.s, g, tt.max)
		}
	}
	if s := (Sample{5, 1, 3}); s[0] != 5 {
		t.Errorf("Median sorted its receiver")
	}
}

func TestRatio(t *testing.T) {
	for _, tt := range []struct {
		a, b float64
		want string
	}{{2, 1, "2.00x"}, {1, 0, "n/a"}, {0, 1, "n/a"}, {1, 4, "0.25x"}} {
		if g := Ratio(tt.a, tt.b); g != tt.want {
			t.Errorf("Ratio(%v, %v) = %q, want %q", tt.a, tt.b, g, tt.want)
		}
	}
}

func TestTableEscapes(t *testing.T) {
	tb := Table{Header: []string{"a", "b"}}
	tb.Add("x|y", "line1\nline2")
	tb.Add("only-one")
	var b strings.Builder
	if _, err := tb.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	want := "| a | b |\n|---|---|\n| x\\|y | line1 line2 |\n| only-one |  |\n"
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}
