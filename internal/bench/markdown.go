package bench

import (
	"fmt"
	"io"
	"strings"
)

// Table is a markdown table.
type Table struct {
	Header []string
	Rows   [][]string
}

// Add appends a row; cells beyond the header are kept, missing ones empty.
func (t *Table) Add(cells ...string) { t.Rows = append(t.Rows, cells) }

// WriteTo renders the table. Pipes inside cells are escaped so a value can
// never break the table's columns.
func (t *Table) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	row := func(cells []string) {
		b.WriteString("|")
		for i := range t.Header {
			c := ""
			if i < len(cells) {
				c = cells[i]
			}
			c = strings.ReplaceAll(c, "|", `\|`)
			c = strings.ReplaceAll(c, "\n", " ")
			b.WriteString(" " + c + " |")
		}
		b.WriteString("\n")
	}
	row(t.Header)
	b.WriteString("|")
	for range t.Header {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range t.Rows {
		row(r)
	}
	n, err := io.WriteString(w, b.String())
	if err != nil {
		return int64(n), fmt.Errorf("write table: %w", err)
	}
	return int64(n), nil
}
