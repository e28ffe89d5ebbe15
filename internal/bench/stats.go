package bench

import (
	"fmt"
	"slices"
)

// Sample is a set of repeated measurements of one quantity.
type Sample []float64

// Median is the middle value (mean of the two middle ones for an even
// count); 0 for an empty sample.
func (s Sample) Median() float64 {
	if len(s) == 0 {
		return 0
	}
	c := slices.Clone(s)
	slices.Sort(c)
	m := len(c) / 2
	if len(c)%2 == 1 {
		return c[m]
	}
	return (c[m-1] + c[m]) / 2
}

// Min and Max give the spread; 0 for an empty sample.
func (s Sample) Min() float64 {
	if len(s) == 0 {
		return 0
	}
	return slices.Min(s)
}

func (s Sample) Max() float64 {
	if len(s) == 0 {
		return 0
	}
	return slices.Max(s)
}

// Ratio formats a/b as "1.23x", or "n/a" when b is unknown.
func Ratio(a, b float64) string {
	if b <= 0 || a <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// MiB formats a byte count in MiB with two decimals.
func MiB(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }
