package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"rsc.io/qr"
)

// qrText renders s as a QR code (error correction level L) in Unicode
// half blocks, two module rows per line, with a quiet zone of 2 modules.
// Light modules are drawn (█ ▀ ▄) and dark ones left blank, as `qrencode
// -t UTF8` does, for the usual light-on-dark terminal.
func qrText(s string) (string, error) {
	c, err := qr.Encode(s, qr.L)
	if err != nil {
		return "", fmt.Errorf("QR code of the login URL: %w", err)
	}
	const quiet = 2
	dark := func(x, y int) bool {
		x, y = x-quiet, y-quiet
		return x >= 0 && y >= 0 && x < c.Size && y < c.Size && c.Black(x, y)
	}
	n := c.Size + 2*quiet
	var b strings.Builder
	for y := 0; y < n; y += 2 {
		for x := 0; x < n; x++ {
			top, bottom := !dark(x, y), y+1 < n && !dark(x, y+1)
			switch {
			case top && bottom:
				b.WriteString("█")
			case top:
				b.WriteString("▀")
			case bottom:
				b.WriteString("▄")
			default:
				b.WriteByte(' ')
			}
		}
		b.WriteByte('\n')
	}
	return b.String(), nil
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
