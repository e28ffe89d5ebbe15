package policy

import (
	"net/netip"
	"strings"
)

// ipsets: "ipset:NAME": ["add TARGET", "remove TARGET", "TARGET", ...]
// where a target is an IP, a CIDR, a host alias, autogroup:internet or
// another ipset; operations apply in order. An ipset is a set of
// addresses, usable wherever a CIDR is (src, dst, nodeAttrs target).

func (v *validator) ipsets(raw map[string][]string) {
	v.p.IPSets = map[string][]netip.Prefix{}
	clean := map[string][]string{}
	for _, k := range sortedKeys(raw) {
		clean[trimName(k)] = raw[k]
	}
	state := map[string]int{} // 0 unseen, 1 resolving, 2 done
	var resolve func(name string, stack []string) []netip.Prefix
	resolve = func(name string, stack []string) []netip.Prefix {
		switch state[name] {
		case 1:
			v.fail(path{"ipsets", name}, "ipset cycle: %s -> %s", strings.Join(stack, " -> "), name)
			v.bad[name] = true
			return nil
		case 2:
			return v.p.IPSets[name]
		}
		state[name] = 1
		stack = append(stack, name)
		var set []netip.Prefix
		for i, op := range clean[name] {
			ip := path{"ipsets", name, i}
			op = strings.TrimSpace(op)
			verb, target, ok := strings.Cut(op, " ")
			if !ok || verb != "add" && verb != "remove" {
				verb, target = "add", op
			}
			target = strings.TrimSpace(target)
			var ps []netip.Prefix
			switch {
			case target == "autogroup:internet":
				ps = append(append(ps, internet4...), internet6...)
			case strings.HasPrefix(target, "ipset:"):
				if _, ok := clean[target]; !ok {
					v.fail(ip, "unknown ipset %q", target)
					continue
				}
				ps = resolve(target, stack)
			case v.p.Hosts[target].IsValid():
				ps = []netip.Prefix{v.p.Hosts[target]}
			default:
				pfx, err := v.prefix(ip, target)
				if err != nil {
					v.fail(ip, "ipset %s: %q is not an IP, CIDR, host alias, autogroup:internet or ipset (tags, users and groups are not allowed)", name, op)
					continue
				}
				ps = []netip.Prefix{pfx}
			}
			if verb == "add" {
				set = normalize(append(set, ps...))
			} else {
				var next []netip.Prefix
				for _, q := range set {
					next = append(next, subtractAll(q, ps)...)
				}
				set = normalize(next)
			}
		}
		state[name] = 2
		v.p.IPSets[name] = set
		return set
	}
	for _, name := range sortedKeys(clean) {
		if !strings.HasPrefix(name, "ipset:") || !validName(name[len("ipset:"):]) {
			v.fail(path{"ipsets", name}, "ipset name %q must be \"ipset:\" followed by letters, digits, '-', '_' or '.'", name)
			v.bad[name] = true
			continue
		}
		resolve(name, nil)
	}
}

// expandIPSet turns a dst entry naming an ipset into one entry per
// prefix, so the compiler sees only prefixes.
func expandIPSet(sel selector) []selector {
	if sel.kind != selIPSet {
		return []selector{sel}
	}
	out := make([]selector, 0, len(sel.set))
	for _, p := range sel.set {
		out = append(out, selector{kind: selPrefix, name: sel.name, prefix: p})
	}
	return out
}
