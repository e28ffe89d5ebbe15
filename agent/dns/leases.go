package dns

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Lease is one line of a dnsmasq lease file.
type Lease struct {
	Expiry   time.Time // zero: never expires
	HWAddr   string    // MAC (DHCPv4) or IAID (DHCPv6)
	Addr     netip.Addr
	Hostname string // sanitized DNS label; "" when the client sent none
}

// Limits keep a hostile or corrupt lease file from costing the router
// its memory.
const (
	maxLeaseFile = 4 << 20
	maxLeases    = 10000
	maxLeaseLine = 1024
)

// ReadLeaseFile parses a dnsmasq lease file (read-only). See ParseLeases.
func ReadLeaseFile(path string) ([]Lease, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read leases: %w", err)
	}
	defer f.Close()
	leases, err := ParseLeases(io.LimitReader(f, maxLeaseFile))
	if err != nil {
		return leases, fmt.Errorf("leases %s: %w", path, err)
	}
	return leases, nil
}

// ParseLeases reads "<expiry> <mac|iaid> <ip> <hostname> <client-id>"
// lines. A malformed line is skipped and named in the returned error; the
// good leases are returned either way. The "duid" line of DHCPv6 is
// skipped silently.
func ParseLeases(r io.Reader) ([]Lease, error) {
	var out []Lease
	var errs []error
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxLeaseLine)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "duid ") {
			continue
		}
		l, err := parseLeaseLine(line)
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", n, err))
			continue
		}
		if len(out) >= maxLeases {
			errs = append(errs, fmt.Errorf("line %d: more than %d leases, ignoring the rest", n, maxLeases))
			break
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("lease file: %w", err))
	}
	return out, errors.Join(errs...)
}

func parseLeaseLine(line string) (Lease, error) {
	f := strings.Fields(line)
	if len(f) != 5 && len(f) != 4 {
		return Lease{}, fmt.Errorf("want 5 fields (expiry mac ip hostname client-id), got %d", len(f))
	}
	exp, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || exp < 0 {
		return Lease{}, fmt.Errorf("expiry %q: not a unix time", f[0])
	}
	if !isHWAddr(f[1]) {
		return Lease{}, fmt.Errorf("hardware address %q: want hex digits separated by ':' or '-'", f[1])
	}
	addr, err := netip.ParseAddr(f[2])
	if err != nil || addr.Zone() != "" {
		return Lease{}, fmt.Errorf("address %q: not an IP address", f[2])
	}
	l := Lease{HWAddr: strings.ToLower(f[1]), Addr: addr.Unmap()}
	if exp != 0 {
		l.Expiry = time.Unix(exp, 0)
	}
	if f[3] != "*" {
		l.Hostname = SanitizeLabel(f[3])
	}
	return l, nil
}

func isHWAddr(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// SanitizeLabel turns a DHCP client's hostname into one DNS label: the
// part before the first dot, lowercase, runs of other characters as one
// '-', no '-' at the ends, at most 63 bytes. "" when nothing usable is
// left.
func SanitizeLabel(h string) string {
	if i := strings.IndexByte(h, '.'); i >= 0 {
		h = h[:i]
	}
	b := make([]byte, 0, min(len(h), 63))
	for _, c := range h {
		if len(b) >= 63 {
			break
		}
		switch {
		case c >= 'A' && c <= 'Z':
			b = append(b, byte(c)+'a'-'A')
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b = append(b, byte(c))
		case len(b) > 0 && b[len(b)-1] == '-':
			// collapse: "Johns  iPhone" is johns-iphone
		default:
			b = append(b, '-')
		}
	}
	return strings.Trim(string(b), "-")
}

// LeaseRecords turns live leases into records named
// "<hostname>.<router>" (relative to the mesh domain), so a phone finds
// nas.router-a.<domain>. Expired and nameless leases are left out; a
// hostname on several leases (v4 and v6) gets all their addresses.
func LeaseRecords(leases []Lease, router string, now time.Time) []Record {
	router = SanitizeLabel(router)
	if router == "" {
		return nil
	}
	byName := map[string]*Record{}
	var names []string
	for _, l := range leases {
		if l.Hostname == "" || !l.Addr.IsValid() || (!l.Expiry.IsZero() && !now.Before(l.Expiry)) {
			continue
		}
		name := l.Hostname + "." + router
		r, ok := byName[name]
		if !ok {
			r = &Record{Name: name}
			byName[name] = r
			names = append(names, name)
		}
		if !slices.Contains(r.Addrs, l.Addr) {
			r.Addrs = append(r.Addrs, l.Addr)
		}
	}
	slices.Sort(names)
	out := make([]Record, 0, len(names))
	for _, n := range names {
		out = append(out, *byName[n])
	}
	return out
}
