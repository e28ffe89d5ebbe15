package main

import (
	"strings"
	"testing"

	"rsc.io/qr"
)

// TestQRText: the printed code has the encoder's modules, dark as blanks,
// with the quiet zone around them.
func TestQRText(t *testing.T) {
	url := "https://coord.example:443/login/abcdef0123456789"
	txt, err := qrText(url)
	if err != nil {
		t.Fatal(err)
	}
	c, err := qr.Encode(url, qr.L)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(txt, "\n"), "\n")
	n := c.Size + 4
	if len(lines) != (n+1)/2 {
		t.Fatalf("%d lines, want %d", len(lines), (n+1)/2)
	}
	for i, l := range lines {
		cells := []rune(l)
		if len(cells) != n {
			t.Fatalf("line %d has %d cells, want %d", i, len(cells), n)
		}
		for x, r := range cells {
			for half, y := range []int{2 * i, 2*i + 1} {
				mx, my := x-2, y-2
				wantDark := mx >= 0 && my >= 0 && mx < c.Size && my < c.Size && c.Black(mx, my)
				if y >= n {
					continue
				}
				light := r == '█' || (half == 0 && r == '▀') || (half == 1 && r == '▄')
				if light == wantDark {
					t.Fatalf("module (%d,%d): cell %q, dark %v", mx, my, r, wantDark)
				}
			}
		}
	}
	if _, err := qrText(strings.Repeat("x", 4000)); err == nil {
		t.Error("a text too long for a QR code was encoded")
	}
}
