package store

import "strings"

// maxLabel is a DNS label's length limit, less room for a "-NNN" suffix.
const maxLabel = 63 - 4

// DNSLabel turns a hostname into a lower-case DNS label: letters, digits
// and inner hyphens, at most 59 characters; "node" if nothing is left.
func DNSLabel(hostname string) string {
	// Only the first label of a FQDN names the host.
	hostname, _, _ = strings.Cut(hostname, ".")
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(hostname) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
		default:
			dash = true
		}
	}
	s := strings.Trim(b.String(), "-")
	if len(s) > maxLabel {
		s = strings.TrimRight(s[:maxLabel], "-")
	}
	if s == "" {
		return "node"
	}
	return s
}
