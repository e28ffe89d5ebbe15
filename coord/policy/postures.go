package policy

import (
	"strings"
)

// Device postures. lanmesh nodes report no posture attributes (OS,
// client version, MDM state, ...), so no node can satisfy a posture:
// a rule with a srcPosture (or, when defaultSrcPosture is set, a rule
// without its own) admits no one. It never fails open.

var postureOps = []string{" not in ", " in ", "==", "!=", "<=", ">=", "<", ">", " is set", " not set"}

func (v *validator) postures(raw map[string][]string, dflt []string) {
	v.p.Postures = map[string][]string{}
	for _, name := range sortedKeys(raw) {
		pp := path{"postures", name}
		n := trimName(name)
		if !strings.HasPrefix(n, "posture:") || !validName(n[len("posture:"):]) {
			v.fail(pp, "posture name %q must be \"posture:\" followed by letters, digits, '-', '_' or '.'", name)
			v.bad[n] = true
			continue
		}
		for i, c := range raw[name] {
			low := strings.ToLower(strings.TrimSpace(c))
			ok := false
			for _, op := range postureOps {
				if i := strings.Index(low, op); i > 0 {
					ok = true
					break
				}
			}
			if !ok || !strings.Contains(low, ":") {
				v.fail(pp.add(i), "posture condition %q must be ATTRIBUTE OP VALUE, e.g. \"node:os == 'linux'\"", c)
			}
		}
		v.p.Postures[n] = raw[name]
	}
	if len(raw) > 0 {
		v.warn(path{"postures"}, "lanmesh nodes report no posture attributes: a rule that requires a posture admits no one")
	}
	v.p.defaultPosture = v.postureRefs(path{"defaultSrcPosture"}, dflt)
}

// postureRefs checks a srcPosture list; it reports whether the list
// requires any posture.
func (v *validator) postureRefs(p path, names []string) bool {
	for i, n := range names {
		n = trimName(n)
		if _, ok := v.p.Postures[n]; !ok && !v.bad[n] {
			v.fail(p.add(i), "unknown posture %q (define it in postures)", n)
		}
	}
	return len(names) > 0
}
