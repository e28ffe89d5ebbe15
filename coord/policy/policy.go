package policy

import (
	"errors"
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
	IPSets        map[string][]netip.Prefix
	Postures      map[string][]string
	ACLs          []ACL
	Grants        []Grant
	AutoApprovers AutoApprovers
	SSH           []SSHRule
	Tests         []Test
	SSHTests      []SSHTest
	NodeAttrs     []NodeAttr

	// Warnings are findings that do not refuse the policy: Tailscale
	// settings accepted without effect, normalized prefixes.
	Warnings []*Error
	// NotPortable lists constructs Tailscale refuses (lanmesh
	// extensions such as nested groups); `policy check --strict`
	// refuses a policy that has any.
	NotPortable []*Error

	defaultPosture bool // defaultSrcPosture is set

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
	origin string // "grants[1].ip[0]" for a grant's rule; "" for acls[i]
	// posture: the rule requires a device posture, which no lanmesh
	// node can show, so it admits no one.
	posture bool
	via     []selector // a grant's via: only these routers admit routed traffic
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
	Action string // accept or check
	Src    []string
	Dst    []string
	Users  []string
	// CheckPeriod is how often a check rule asks again: CheckAlways,
	// or a duration up to MaxCheckPeriod (default 12h); 0 for accept.
	CheckPeriod time.Duration
	AcceptEnv   []string

	src, dst []selector
	posture  bool // requires a device posture: matches no one
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
	IPSets        map[string][]string `json:"ipsets"`
	ACLs          []rawACL            `json:"acls"`
	Grants        []rawGrant          `json:"grants"`
	AutoApprovers *rawAutoApprovers   `json:"autoApprovers"`
	SSH           []rawSSH            `json:"ssh"`
	Tests         []rawTest           `json:"tests"`
	SSHTests      []rawSSHTest        `json:"sshTests"`
	NodeAttrs     []rawNodeAttr       `json:"nodeAttrs"`

	// Tailscale sections lanmesh does not compile yet: refused by name,
	// never ignored, since each changes who may reach what.
	Postures          map[string][]string `json:"postures"`
	DefaultSrcPosture []string            `json:"defaultSrcPosture"`

	// Tailnet-wide settings that do not change who may reach what.
	RandomizeClientPort noEffect `json:"randomizeClientPort" why:"lanmesh agents pick their own WireGuard port"`
	DERPMap             noEffect `json:"derpMap" why:"lanmesh relays come from coord's relay map"`
	DisableIPv4         noEffect `json:"disableIPv4" why:"coord always assigns both address families"`
	OneCGNATRoute       noEffect `json:"OneCGNATRoute" why:"lanmesh installs its own routes"`
}

type rawACL struct {
	Action string   `json:"action"`
	Src    []string `json:"src"`
	Dst    []string `json:"dst"`
	Proto  string   `json:"proto"`
	// Tailscale's legacy names for src and dst.
	Users []string `json:"users"`
	Ports []string `json:"ports"`

	SrcPosture []string `json:"srcPosture"`
}

type rawAutoApprovers struct {
	Routes   map[string][]string `json:"routes"`
	ExitNode []string            `json:"exitNode"`
	Services noEffect            `json:"services" why:"lanmesh has no Tailscale Services"`
}

type rawSSH struct {
	Action      string   `json:"action"`
	Src         []string `json:"src"`
	Dst         []string `json:"dst"`
	Users       []string `json:"users"`
	CheckPeriod string   `json:"checkPeriod"`
	AcceptEnv   []string `json:"acceptEnv"`

	SrcPosture []string `json:"srcPosture"`
	// Session recording: lanmesh has no SSH server, so its ssh rules
	// grant nothing yet and there is nothing to record.
	Recorder        noEffect `json:"recorder" why:"lanmesh records no SSH sessions"`
	EnforceRecorder noEffect `json:"enforceRecorder" why:"lanmesh records no SSH sessions"`
}

type rawTest struct {
	Src    string   `json:"src"`
	Accept []string `json:"accept"`
	Deny   []string `json:"deny"`
	Proto  string   `json:"proto"`

	SrcPostureAttrs unsupported `json:"srcPostureAttrs" why:"device postures"`
}

// Parse reads a HuJSON policy. name is used in error messages
// ("policy.hujson:12:14: acls[1].dst[0]: ..."). One call reports every
// problem it finds (up to 500), each placed in the file.
func Parse(name string, b []byte) (*Policy, error) {
	d := Diagnose(name, b)
	if len(d.Errors) > 0 {
		return nil, joinErrors(d.Errors)
	}
	return d.Policy, nil
}

// Diagnosis is everything Parse finds in a policy file.
type Diagnosis struct {
	Policy   *Policy  // nil when Errors is not empty
	Errors   []*Error // in file order
	Warnings []*Error
	// NotPortable lists lanmesh extensions Tailscale would refuse.
	NotPortable []*Error
}

// Diagnose parses a policy like Parse and returns errors, warnings and
// portability findings separately, for `policy check`.
func Diagnose(name string, b []byte) Diagnosis {
	var raw rawPolicy
	s, dec, err := parseDocument(name, b, &raw)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return Diagnosis{Errors: []*Error{e}}
		}
		return Diagnosis{Errors: []*Error{{File: name, Msg: err.Error()}}}
	}
	v := &validator{src: s, p: &Policy{src: s}, bad: map[string]bool{}, undecoded: dec.badPaths}
	v.errs = dec.errs
	v.run(&raw)
	d := Diagnosis{Warnings: append(dec.warns, v.warns...), NotPortable: v.notPortable}
	sortErrors(d.Warnings)
	sortErrors(d.NotPortable)
	if len(v.errs) > 0 {
		sortErrors(v.errs)
		d.Errors = v.errs
		return d
	}
	v.p.Warnings, v.p.NotPortable = d.Warnings, d.NotPortable
	d.Policy = v.p
	return d
}

type validator struct {
	src         *source
	p           *Policy
	errs        []*Error
	warns       []*Error
	notPortable []*Error
	// bad holds names (groups, hosts, tags) whose definition was
	// refused: references to them are not reported again.
	bad map[string]bool
	// undecoded holds the JSON pointers of values of the wrong type,
	// reported by the decoder: checks of them would only echo.
	undecoded map[string]bool
}

// errEchoed is a selector error already reported where the name is
// defined.
var errEchoed = errors.New("echo")

func (v *validator) fail(p path, format string, args ...any) {
	if len(args) == 1 {
		if err, ok := args[0].(error); ok && errors.Is(err, errEchoed) {
			return
		}
	}
	v.errs = append(v.errs, v.src.errAt(p, format, args...))
}

func (v *validator) warn(p path, format string, args ...any) {
	e := v.src.errAt(p, format, args...)
	e.Warning = true
	v.warns = append(v.warns, e)
}

// nonPortable records a construct Tailscale would refuse (a lanmesh
// extension); policy check --strict reports them.
func (v *validator) nonPortable(p path, format string, args ...any) {
	v.notPortable = append(v.notPortable, v.src.errAt(p, format, args...))
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
	for _, lim := range []struct {
		name   string
		n, max int
	}{{"acls", len(raw.ACLs), MaxACLs}, {"tests", len(raw.Tests), MaxTests}, {"ssh", len(raw.SSH), MaxSSH},
		{"sshTests", len(raw.SSHTests), MaxTests}, {"nodeAttrs", len(raw.NodeAttrs), MaxACLs}} {
		if lim.n > lim.max {
			v.fail(path{lim.name}, "%d entries, more than the limit of %d", lim.n, lim.max)
			return
		}
	}
	v.groups(raw.Groups)
	v.tagOwners(raw.TagOwners)
	v.hosts(raw.Hosts)
	v.ipsets(raw.IPSets)
	v.postures(raw.Postures, raw.DefaultSrcPosture)
	for i, a := range raw.ACLs {
		v.acl(path{"acls", i}, a)
	}
	if len(raw.Grants) > MaxACLs {
		v.fail(path{"grants"}, "%d entries, more than the limit of %d", len(raw.Grants), MaxACLs)
	} else {
		for i, g := range raw.Grants {
			v.grant(path{"grants", i}, g)
		}
	}
	v.autoApprovers(raw.AutoApprovers)
	for i, r := range raw.SSH {
		v.ssh(path{"ssh", i}, r)
	}
	for i, t := range raw.Tests {
		v.test(path{"tests", i}, t)
	}
	for i, t := range raw.SSHTests {
		v.sshTest(path{"sshTests", i}, t)
	}
	for i, a := range raw.NodeAttrs {
		v.nodeAttr(path{"nodeAttrs", i}, a)
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

// trimName drops whitespace around a name, as Tailscale does.
func trimName(s string) string { return strings.TrimSpace(s) }

func (v *validator) groups(groups map[string][]string) {
	// Names are trimmed ("group:x " is group:x).
	clean := make(map[string][]string, len(groups))
	for _, g := range sortedKeys(groups) {
		name := trimName(g)
		if _, dup := clean[name]; dup {
			v.fail(path{"groups", g}, "group %q is defined twice", name)
		}
		clean[name] = groups[g]
	}
	for _, g := range sortedKeys(groups) {
		gp := path{"groups", g}
		name := trimName(g)
		if !strings.HasPrefix(name, "group:") || !validName(name[len("group:"):]) {
			v.fail(gp, "group name %q must be \"group:\" followed by letters, digits, '-', '_' or '.'", g)
			v.bad[name] = true
		}
		for i, m := range groups[g] {
			m = trimName(m)
			switch {
			case v.undecodable(gp.add(i)):
			case strings.HasPrefix(m, "group:"):
				if _, ok := clean[m]; !ok {
					v.fail(gp.add(i), "unknown group %q", m)
				} else {
					v.nonPortable(gp.add(i), "group %q inside a group: nested groups are a lanmesh extension, Tailscale refuses them", m)
				}
			case validUser(m):
				if strings.HasSuffix(m, "@") {
					v.nonPortable(gp.add(i), "login %q without a domain is a lanmesh form; Tailscale logins have one", m)
				}
			default:
				v.fail(gp.add(i), "group member %q is neither a user (name@domain) nor a group", m)
			}
		}
	}
	v.p.Groups = clean
	v.p.groupUsers = map[string]map[string]bool{}
	for _, g := range sortedKeys(groups) {
		name := trimName(g)
		users := map[string]bool{}
		if err := flattenGroup(clean, name, users, nil); err != "" {
			v.fail(path{"groups", g}, "%s", err)
		}
		v.p.groupUsers[name] = users
	}
}

// flattenGroup adds g's users to out; stack is the chain of groups being
// expanded, to name a cycle. Members that are neither groups nor valid
// logins were reported already and are left out.
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
		m = trimName(m)
		if strings.HasPrefix(m, "group:") {
			if _, ok := groups[m]; !ok {
				continue
			}
			if err := flattenGroup(groups, m, out, stack); err != "" {
				return err
			}
		} else if validUser(m) {
			out[m] = true
		}
	}
	return ""
}

func (v *validator) tagOwners(owners map[string][]string) {
	clean := make(map[string][]string, len(owners))
	for _, t := range sortedKeys(owners) {
		clean[trimName(t)] = owners[t]
	}
	v.p.TagOwners = clean
	for _, t := range sortedKeys(owners) {
		tp := path{"tagOwners", t}
		name := trimName(t)
		if !strings.HasPrefix(name, "tag:") || !validName(name[len("tag:"):]) {
			v.fail(tp, "tag name %q must be \"tag:\" followed by letters, digits, '-', '_' or '.'", t)
			v.bad[name] = true
			continue
		}
		for i, o := range owners[t] {
			o = trimName(o)
			switch {
			case strings.HasPrefix(o, "group:"):
				if _, ok := v.p.Groups[o]; !ok {
					v.fail(tp.add(i), "unknown group %q", o)
				}
			case strings.HasPrefix(o, "tag:"):
				if _, ok := clean[o]; !ok {
					v.fail(tp.add(i), "unknown tag %q (not in tagOwners)", o)
				}
			case o == "autogroup:admin", o == "autogroup:member", o == "autogroup:owner", o == "autogroup:it-admin",
				o == "autogroup:network-admin", validUser(o):
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
		name := trimName(h)
		if !validName(name) || strings.Contains(name, "@") {
			v.fail(hp, "host alias %q must be letters, digits, '-', '_' or '.'", h)
			v.bad[name] = true
			continue
		}
		pfx, err := v.prefix(hp, trimName(hosts[h]))
		if err != nil {
			v.fail(hp, "host %q: %v", h, err)
			v.bad[name] = true
			continue
		}
		v.p.Hosts[name] = pfx
	}
}

// prefix is parsePrefix that accepts a prefix with host bits set, as
// Tailscale does, normalizing it with a warning at p.
func (v *validator) prefix(p path, s string) (netip.Prefix, error) {
	pfx, err := parsePrefix(s)
	var hb hostBitsError
	if errors.As(err, &hb) {
		v.warn(p, "%q has host bits set; read as %s", s, hb.masked)
		return hb.masked, nil
	}
	return pfx, err
}

type hostBitsError struct {
	s      string
	masked netip.Prefix
}

func (e hostBitsError) Error() string {
	return fmt.Sprintf("%q has host bits set; did you mean %s?", e.s, e.masked)
}

// parsePrefix reads an IP (as a single-address prefix) or a CIDR prefix
// that has no host bits set (hostBitsError otherwise).
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP prefix", s)
		}
		if p.Addr().Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: zones are not allowed", s)
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("%q: write IPv4-mapped prefixes as IPv4", s)
		}
		if p.Masked() != p {
			return netip.Prefix{}, hostBitsError{s, p.Masked()}
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
	srcKey, dstKey := "src", "dst"
	switch {
	case r.Users != nil && r.Src != nil:
		v.fail(p.add("users"), "both \"src\" and its legacy name \"users\"; keep src")
	case r.Users != nil:
		r.Src, srcKey = r.Users, "users"
	}
	switch {
	case r.Ports != nil && r.Dst != nil:
		v.fail(p.add("ports"), "both \"dst\" and its legacy name \"ports\"; keep dst")
	case r.Ports != nil:
		r.Dst, dstKey = r.Ports, "ports"
	}
	a := ACL{Action: r.Action, Src: r.Src, Dst: r.Dst, Proto: r.Proto}
	a.posture = v.postureRefs(p.add("srcPosture"), r.SrcPosture) || r.SrcPosture == nil && v.p.defaultPosture
	switch {
	case !v.present(p.add("action")):
		v.fail(p, "missing \"action\" (write \"action\": \"accept\")")
	case r.Action != "accept":
		v.fail(p.add("action"), "action %q: only \"accept\" is supported", r.Action)
	}
	v.required(p, srcKey, len(r.Src))
	v.required(p, dstKey, len(r.Dst))
	protos, portless, err := parseProto(r.Proto)
	if err != nil {
		v.fail(p.add("proto"), "%v", err)
	}
	a.protos = protos
	for i, s := range r.Src {
		sel, err := v.selectorAt(p.add(srcKey).add(i), s, ctxSrc)
		if err != nil {
			v.fail(p.add(srcKey).add(i), "%v", err)
			continue
		}
		a.src = append(a.src, sel)
	}
	hasSelf := false
	for i, d := range r.Dst {
		dp := p.add(dstKey).add(i)
		d = trimName(d)
		host, ports, ok := splitHostPorts(d)
		if !ok {
			v.fail(dp, "%q must be host:ports, e.g. \"nas:445\" or \"tag:web:80,443\"", d)
			continue
		}
		sel, err := v.selectorAt(dp, host, ctxDst)
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
		for _, s := range expandIPSet(sel) {
			a.dst = append(a.dst, dstEntry{sel: s, ports: pr})
		}
	}
	if hasSelf {
		for i, s := range a.src {
			switch s.kind {
			case selUser, selGroup, selMember, selAll:
			default:
				v.fail(p.add(srcKey).add(i), "%q: with autogroup:self in dst, src may only name users, groups or autogroup:member", r.Src[i])
			}
		}
	}
	v.p.ACLs = append(v.p.ACLs, a)
}

// present reports whether p is written in the file.
func (v *validator) present(p path) bool { return v.src.tree.Find(p.pointer()) != nil }

func (v *validator) undecodable(p path) bool { return v.undecoded[p.pointer()] }

// required reports a missing or empty list key of the object at p,
// naming the key, placed at the key or else at the object.
func (v *validator) required(p path, key string, n int) {
	switch {
	case n > 0, v.undecodable(p.add(key)):
	case !v.present(p.add(key)):
		v.fail(p, "missing %q", key)
	default:
		v.fail(p.add(key), "%q is empty", key)
	}
}

// selectorAt resolves s, trimmed of surrounding whitespace; an empty
// name is reported as such.
func (v *validator) selectorAt(p path, s string, ctx selContext) (selector, error) {
	s = trimName(s)
	if v.undecodable(p) {
		return selector{}, errEchoed
	}
	if s == "" {
		return selector{}, fmt.Errorf("empty name; write a user, group, tag, host, IP or \"*\"")
	}
	if v.bad[s] {
		return selector{}, errEchoed
	}
	return v.selector(s, ctx)
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

func (v *validator) test(p path, r rawTest) {
	t := Test{Src: trimName(r.Src), Accept: r.Accept, Deny: r.Deny, Proto: r.Proto}
	if !v.present(p.add("src")) {
		v.fail(p, "missing \"src\" (the user, tag, host or IP the test connects from)")
	} else {
		sel, err := v.selectorAt(p.add("src"), r.Src, ctxSrc)
		if err == nil && sel.kind != selUser && sel.kind != selTag && sel.kind != selHost && sel.kind != selPrefix && sel.kind != selGroup {
			err = fmt.Errorf("test src %q must be a user, group, tag, host alias or IP", r.Src)
		}
		if err == nil && sel.kind == selGroup && len(sel.users) == 0 {
			err = fmt.Errorf("test src %q is a group without users", r.Src)
		}
		if err == nil && (sel.kind == selHost || sel.kind == selPrefix) && !sel.prefix.IsSingleIP() {
			err = fmt.Errorf("test src %q is a network (%s); name one address", r.Src, sel.prefix)
		}
		if err != nil {
			v.fail(p.add("src"), "%v", err)
		}
		t.src = sel
	}
	if len(r.Accept)+len(r.Deny) == 0 {
		v.fail(p, "test has neither \"accept\" nor \"deny\"")
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
			host, port, ok := splitHostPorts(trimName(d))
			if !ok {
				v.fail(dp, "%q must be host:port, e.g. \"nas:445\"", d)
				continue
			}
			sel, err := v.selectorAt(dp, host, ctxDst)
			if err == nil && sel.kind != selUser && sel.kind != selTag && sel.kind != selHost && sel.kind != selPrefix {
				err = fmt.Errorf("test destination %q must be a user, tag, host alias or IP", host)
			}
			if err == nil && sel.kind == selPrefix && strings.Contains(host, "/") {
				err = fmt.Errorf("test destination %q is written as a CIDR; tests connect to one address: write it as an IP (as Tailscale requires)", host)
			}
			if err == nil && (sel.kind == selHost || sel.kind == selPrefix) && !sel.prefix.IsSingleIP() {
				// As Tailscale: a test connects to one address.
				err = fmt.Errorf("test destination %q is a network (%s); tests connect to one address", host, sel.prefix)
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
