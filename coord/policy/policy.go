package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/internal/wire"
)

// Policy is a parsed and validated policy file. A nil *Policy means "no
// policy set": Compile then applies the default (each user's devices and
// the LANs they route reach each other, nothing else).
type Policy struct {
	Groups        map[string][]string     // as written
	TagOwners     map[string][]string     // as written
	Hosts         map[string]netip.Prefix // alias -> prefix
	ACLs          []ACL
	AutoApprovers AutoApprovers
	SSH           []SSHRule
	Tests         []Test

	src        *source
	groupUsers map[string]map[string]bool // group -> flattened users
}

// ACL is one access rule.
type ACL struct {
	Action string
	Src    []string
	Dst    []string
	Proto  string

	src    []selector
	dst    []dstEntry
	protos []uint8
}

// AutoApprovers approves advertised routes without an admin's click.
type AutoApprovers struct {
	Routes   map[netip.Prefix][]string
	ExitNode []string

	routes   map[netip.Prefix][]selector
	exitNode []selector
}

// SSHRule is one rule of the policy's ssh section.
type SSHRule struct {
	Action      string // accept or check
	Src         []string
	Dst         []string
	Users       []string
	CheckPeriod time.Duration
}

// Test is one of the policy's own tests: src must reach every accept
// destination and none of the deny destinations.
type Test struct {
	Src    string
	Accept []string
	Deny   []string
	Proto  string

	src    selector
	accept []testDst
	deny   []testDst
	protos []uint8
}

type testDst struct {
	sel  selector
	port uint16
}

type rawPolicy struct {
	Groups        map[string][]string `json:"groups"`
	TagOwners     map[string][]string `json:"tagOwners"`
	Hosts         map[string]string   `json:"hosts"`
	ACLs          []rawACL            `json:"acls"`
	AutoApprovers *rawAutoApprovers   `json:"autoApprovers"`
	SSH           []rawSSH            `json:"ssh"`
	Tests         []rawTest           `json:"tests"`
}

type rawACL struct {
	Action string   `json:"action"`
	Src    []string `json:"src"`
	Dst    []string `json:"dst"`
	Proto  string   `json:"proto"`
}

type rawAutoApprovers struct {
	Routes   map[string][]string `json:"routes"`
	ExitNode []string            `json:"exitNode"`
}

type rawSSH struct {
	Action      string   `json:"action"`
	Src         []string `json:"src"`
	Dst         []string `json:"dst"`
	Users       []string `json:"users"`
	CheckPeriod string   `json:"checkPeriod"`
}

type rawTest struct {
	Src    string   `json:"src"`
	Accept []string `json:"accept"`
	Deny   []string `json:"deny"`
	Proto  string   `json:"proto"`
}

// Parse reads a HuJSON policy. name is used in error messages
// ("policy.hujson:12:14: acls[1].dst[0]: ...").
func Parse(name string, b []byte) (*Policy, error) {
	var raw rawPolicy
	s, err := parseDocument(name, b, &raw)
	if err != nil {
		return nil, err
	}
	v := &validator{src: s, p: &Policy{src: s}}
	v.run(&raw)
	if len(v.errs) > 0 {
		return nil, joinErrors(v.errs)
	}
	return v.p, nil
}

type validator struct {
	src  *source
	p    *Policy
	errs []*Error
}

func (v *validator) fail(p path, format string, args ...any) {
	if len(v.errs) < maxErrors*2 {
		v.errs = append(v.errs, v.src.errAt(p, format, args...))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (v *validator) run(raw *rawPolicy) {
	p := v.p
	p.Groups, p.TagOwners = raw.Groups, raw.TagOwners
	if len(raw.ACLs) > MaxACLs {
		v.fail(path{"acls"}, "%d rules, more than the limit of %d", len(raw.ACLs), MaxACLs)
		return
	}
	if len(raw.Tests) > MaxTests {
		v.fail(path{"tests"}, "%d tests, more than the limit of %d", len(raw.Tests), MaxTests)
		return
	}
	if len(raw.SSH) > MaxSSH {
		v.fail(path{"ssh"}, "%d rules, more than the limit of %d", len(raw.SSH), MaxSSH)
		return
	}
	v.groups(raw.Groups)
	v.tagOwners(raw.TagOwners)
	v.hosts(raw.Hosts)
	if len(v.errs) > 0 {
		return // later sections refer to these; errors there would only echo
	}
	for i, a := range raw.ACLs {
		v.acl(path{"acls", i}, a)
	}
	v.autoApprovers(raw.AutoApprovers)
	for i, r := range raw.SSH {
		v.ssh(path{"ssh", i}, r)
	}
	for i, t := range raw.Tests {
		v.test(path{"tests", i}, t)
	}
}

func validUser(s string) bool {
	at := strings.IndexByte(s, '@')
	return at > 0 && !strings.ContainsAny(s, " \t\r\n:,*/") && strings.Count(s, "@") == 1
}

func validName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

func (v *validator) groups(groups map[string][]string) {
	for _, g := range sortedKeys(groups) {
		gp := path{"groups", g}
		if !strings.HasPrefix(g, "group:") || !validName(g[len("group:"):]) {
			v.fail(gp, "group name %q must be \"group:\" followed by letters, digits, '-', '_' or '.'", g)
			continue
		}
		for i, m := range groups[g] {
			switch {
			case strings.HasPrefix(m, "group:"):
				if _, ok := groups[m]; !ok {
					v.fail(gp.add(i), "unknown group %q", m)
				}
			case validUser(m):
			default:
				v.fail(gp.add(i), "group member %q is neither a user (name@domain) nor a group", m)
			}
		}
	}
	if len(v.errs) > 0 {
		return
	}
	v.p.groupUsers = map[string]map[string]bool{}
	for _, g := range sortedKeys(groups) {
		users := map[string]bool{}
		if err := flattenGroup(groups, g, users, nil); err != "" {
			v.fail(path{"groups", g}, "%s", err)
			continue
		}
		v.p.groupUsers[g] = users
	}
}

// flattenGroup adds g's users to out; stack is the chain of groups being
// expanded, to name a cycle.
func flattenGroup(groups map[string][]string, g string, out map[string]bool, stack []string) string {
	for i, s := range stack {
		if s == g {
			return fmt.Sprintf("group cycle: %s", strings.Join(append(stack[i:], g), " -> "))
		}
	}
	if len(stack) >= MaxGroupDepth {
		return fmt.Sprintf("groups nested deeper than %d: %s ...", MaxGroupDepth, strings.Join(stack[:3], " -> "))
	}
	stack = append(stack, g)
	for _, m := range groups[g] {
		if strings.HasPrefix(m, "group:") {
			if err := flattenGroup(groups, m, out, stack); err != "" {
				return err
			}
		} else {
			out[m] = true
		}
	}
	return ""
}

func (v *validator) tagOwners(owners map[string][]string) {
	for _, t := range sortedKeys(owners) {
		tp := path{"tagOwners", t}
		if !strings.HasPrefix(t, "tag:") || !validName(t[len("tag:"):]) {
			v.fail(tp, "tag name %q must be \"tag:\" followed by letters, digits, '-', '_' or '.'", t)
			continue
		}
		for i, o := range owners[t] {
			switch {
			case strings.HasPrefix(o, "group:"):
				if _, ok := v.p.Groups[o]; !ok {
					v.fail(tp.add(i), "unknown group %q", o)
				}
			case strings.HasPrefix(o, "tag:"):
				if _, ok := owners[o]; !ok {
					v.fail(tp.add(i), "unknown tag %q (not in tagOwners)", o)
				}
			case o == "autogroup:admin", o == "autogroup:member", validUser(o):
			default:
				v.fail(tp.add(i), "tag owner %q is not a user, group, tag or autogroup:admin", o)
			}
		}
	}
}

func (v *validator) hosts(hosts map[string]string) {
	v.p.Hosts = map[string]netip.Prefix{}
	for _, h := range sortedKeys(hosts) {
		hp := path{"hosts", h}
		if !validName(h) || strings.Contains(h, "@") {
			v.fail(hp, "host alias %q must be letters, digits, '-', '_' or '.'", h)
			continue
		}
		pfx, err := parsePrefix(hosts[h])
		if err != nil {
			v.fail(hp, "host %q: %v", h, err)
			continue
		}
		v.p.Hosts[h] = pfx
	}
}

// parsePrefix reads an IP (as a single-address prefix) or a CIDR prefix
// that has no host bits set.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP prefix", s)
		}
		if p.Addr().Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: zones are not allowed", s)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set; did you mean %s?", s, p.Masked())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or prefix", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (v *validator) acl(p path, r rawACL) {
	a := ACL{Action: r.Action, Src: r.Src, Dst: r.Dst, Proto: r.Proto}
	if r.Action != "accept" {
		v.fail(p.add("action"), "action %q: only \"accept\" is supported", r.Action)
	}
	if len(r.Src) == 0 {
		v.fail(p, "src is missing or empty")
	}
	if len(r.Dst) == 0 {
		v.fail(p, "dst is missing or empty")
	}
	protos, portless, err := parseProto(r.Proto)
	if err != nil {
		v.fail(p.add("proto"), "%v", err)
	}
	a.protos = protos
	for i, s := range r.Src {
		sel, err := v.selector(s, ctxSrc)
		if err != nil {
			v.fail(p.add("src").add(i), "%v", err)
			continue
		}
		a.src = append(a.src, sel)
	}
	hasSelf := false
	for i, d := range r.Dst {
		dp := p.add("dst").add(i)
		host, ports, ok := splitHostPorts(d)
		if !ok {
			v.fail(dp, "%q must be host:ports, e.g. \"nas:445\" or \"tag:web:80,443\"", d)
			continue
		}
		sel, err := v.selector(host, ctxDst)
		if err != nil {
			v.fail(dp, "%v", err)
			continue
		}
		pr, err := parsePorts(ports)
		if err != nil {
			v.fail(dp, "%q: %v", d, err)
			continue
		}
		if portless && !(len(pr) == 1 && pr[0] == wire.AllPorts) {
			v.fail(dp, "%q: proto %q has no ports; use %s:*", d, r.Proto, host)
			continue
		}
		hasSelf = hasSelf || sel.kind == selSelf
		a.dst = append(a.dst, dstEntry{sel: sel, ports: pr})
	}
	if hasSelf {
		for i, s := range a.src {
			switch s.kind {
			case selUser, selGroup, selMember:
			default:
				v.fail(p.add("src").add(i), "%q: with autogroup:self in dst, src may only name users, groups or autogroup:member", r.Src[i])
			}
		}
	}
	v.p.ACLs = append(v.p.ACLs, a)
}

// splitHostPorts splits "host:ports" at the last colon; IPv6 may be
// bracketed: "[2001:db8::1]:22".
func splitHostPorts(s string) (host, ports string, ok bool) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 || i == len(s)-1 {
		return "", "", false
	}
	host, ports = s[:i], s[i+1:]
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	return host, ports, true
}

// parsePorts reads "*", "22", "80,443", "1000-2000" and mixes of them,
// returned sorted and merged.
func parsePorts(s string) ([]wire.PortRange, error) {
	if s == "*" {
		return []wire.PortRange{wire.AllPorts}, nil
	}
	var out []wire.PortRange
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := parsePort(lo)
		if err != nil {
			return nil, err
		}
		last := first
		if isRange {
			if last, err = parsePort(hi); err != nil {
				return nil, err
			}
			if last < first {
				return nil, fmt.Errorf("port range %q is backwards", part)
			}
		}
		out = append(out, wire.PortRange{First: first, Last: last})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].First < out[j].First })
	merged := out[:1]
	for _, r := range out[1:] {
		last := &merged[len(merged)-1]
		if uint32(r.First) <= uint32(last.Last)+1 {
			last.Last = max(last.Last, r.Last)
		} else {
			merged = append(merged, r)
		}
	}
	return merged, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %q must be a number from 1 to 65535, a range a-b, or *", s)
	}
	return uint16(n), nil
}

// defaultProtos is what a rule without proto admits, as in Tailscale.
var defaultProtos = []uint8{wire.ProtoICMP, wire.ProtoTCP, wire.ProtoUDP, wire.ProtoICMPv6}

// parseProto maps a rule's proto to IP protocol numbers. portless is
// true when none of them has ports.
func parseProto(s string) (protos []uint8, portless bool, err error) {
	switch strings.ToLower(s) {
	case "":
		return defaultProtos, false, nil
	case "tcp":
		return []uint8{wire.ProtoTCP}, false, nil
	case "udp":
		return []uint8{wire.ProtoUDP}, false, nil
	case "sctp":
		return []uint8{wire.ProtoSCTP}, false, nil
	case "icmp":
		// ICMP means both families' ICMP, or ping would work on one only.
		return []uint8{wire.ProtoICMP, wire.ProtoICMPv6}, true, nil
	case "ipv6-icmp", "icmpv6":
		return []uint8{wire.ProtoICMPv6}, true, nil
	case "gre":
		return []uint8{wire.ProtoGRE}, true, nil
	case "esp":
		return []uint8{wire.ProtoESP}, true, nil
	case "ah":
		return []uint8{wire.ProtoAH}, true, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return nil, false, fmt.Errorf("unknown proto %q (use tcp, udp, icmp, sctp, gre, esp, ah or a number 0-255)", s)
	}
	return []uint8{uint8(n)}, !wire.HasPorts(uint8(n)), nil
}

func (v *validator) autoApprovers(raw *rawAutoApprovers) {
	if raw == nil {
		return
	}
	aa := &v.p.AutoApprovers
	aa.Routes = map[netip.Prefix][]string{}
	aa.routes = map[netip.Prefix][]selector{}
	for _, r := range sortedKeys(raw.Routes) {
		rp := path{"autoApprovers", "routes", r}
		pfx, err := parsePrefix(r)
		if err != nil {
			v.fail(rp, "%v", err)
			continue
		}
		aa.Routes[pfx] = raw.Routes[r]
		for i, s := range raw.Routes[r] {
			if sel, err := v.approver(s); err != nil {
				v.fail(rp.add(i), "%v", err)
			} else {
				aa.routes[pfx] = append(aa.routes[pfx], sel)
			}
		}
	}
	aa.ExitNode = raw.ExitNode
	for i, s := range raw.ExitNode {
		if sel, err := v.approver(s); err != nil {
			v.fail(path{"autoApprovers", "exitNode", i}, "%v", err)
		} else {
			aa.exitNode = append(aa.exitNode, sel)
		}
	}
}

func (v *validator) approver(s string) (selector, error) {
	sel, err := v.selector(s, ctxIdentity)
	if err != nil {
		return sel, err
	}
	return sel, nil
}

var sshUserOK = func(s string) bool {
	if s == "root" || s == "autogroup:nonroot" || s == "=" {
		return true
	}
	if s == "" || len(s) > 32 || !(s[0] >= 'a' && s[0] <= 'z' || s[0] == '_') {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

func (v *validator) ssh(p path, r rawSSH) {
	rule := SSHRule{Action: r.Action, Src: r.Src, Dst: r.Dst, Users: r.Users}
	if r.Action != "accept" && r.Action != "check" {
		v.fail(p.add("action"), "action %q must be \"accept\" or \"check\"", r.Action)
	}
	if r.CheckPeriod != "" {
		d, err := time.ParseDuration(r.CheckPeriod)
		switch {
		case err != nil || d <= 0:
			v.fail(p.add("checkPeriod"), "checkPeriod %q is not a positive duration like \"12h\"", r.CheckPeriod)
		case r.Action != "check":
			v.fail(p.add("checkPeriod"), "checkPeriod needs action \"check\"")
		}
		rule.CheckPeriod = d
	}
	for _, f := range []struct {
		name string
		list []string
	}{{"src", r.Src}, {"dst", r.Dst}, {"users", r.Users}} {
		if len(f.list) == 0 {
			v.fail(p, "%s is missing or empty", f.name)
		}
	}
	for i, s := range r.Src {
		sel, err := v.selector(s, ctxSrc)
		if err == nil && sel.kind != selUser && sel.kind != selGroup && sel.kind != selTag && sel.kind != selMember {
			err = fmt.Errorf("ssh src %q must be a user, group, tag or autogroup:member", s)
		}
		if err != nil {
			v.fail(p.add("src").add(i), "%v", err)
		}
	}
	for i, d := range r.Dst {
		sel, err := v.selector(d, ctxDst)
		if err == nil && sel.kind != selUser && sel.kind != selTag && sel.kind != selSelf {
			err = fmt.Errorf("ssh dst %q must be a user, tag or autogroup:self", d)
		}
		if err != nil {
			v.fail(p.add("dst").add(i), "%v", err)
		}
	}
	for i, u := range r.Users {
		if !sshUserOK(u) {
			v.fail(p.add("users").add(i), "ssh user %q is not a valid login name, \"root\" or \"autogroup:nonroot\"", u)
		}
	}
	v.p.SSH = append(v.p.SSH, rule)
}

func (v *validator) test(p path, r rawTest) {
	t := Test{Src: r.Src, Accept: r.Accept, Deny: r.Deny, Proto: r.Proto}
	sel, err := v.selector(r.Src, ctxSrc)
	if err == nil && sel.kind != selUser && sel.kind != selTag && sel.kind != selHost && sel.kind != selPrefix {
		err = fmt.Errorf("test src %q must be a user, tag, host alias or IP", r.Src)
	}
	if err != nil {
		v.fail(p.add("src"), "%v", err)
	}
	t.src = sel
	if len(r.Accept)+len(r.Deny) == 0 {
		v.fail(p, "test has neither accept nor deny")
	}
	protos, _, err := parseProto(r.Proto)
	if err != nil {
		v.fail(p.add("proto"), "%v", err)
	}
	if r.Proto == "" {
		protos = []uint8{wire.ProtoTCP} // a test without proto checks TCP
	}
	t.protos = protos
	for _, list := range []struct {
		name string
		in   []string
		out  *[]testDst
	}{{"accept", r.Accept, &t.accept}, {"deny", r.Deny, &t.deny}} {
		for i, d := range list.in {
			dp := p.add(list.name).add(i)
			host, port, ok := splitHostPorts(d)
			if !ok {
				v.fail(dp, "%q must be host:port, e.g. \"nas:445\"", d)
				continue
			}
			sel, err := v.selector(host, ctxDst)
			if err == nil && sel.kind != selUser && sel.kind != selTag && sel.kind != selHost && sel.kind != selPrefix {
				err = fmt.Errorf("test destination %q must be a user, tag, host alias or IP", host)
			}
			if err != nil {
				v.fail(dp, "%v", err)
				continue
			}
			n, err := parsePort(port)
			if err != nil {
				v.fail(dp, "%q: %v", d, err)
				continue
			}
			*list.out = append(*list.out, testDst{sel: sel, port: n})
		}
	}
	v.p.Tests = append(v.p.Tests, t)
}
