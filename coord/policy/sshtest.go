package policy

import (
	"fmt"
	"net/netip"
	"strings"
)

// SSHTest is one of the policy's sshTests: from src, to every dst, the
// logins in Accept are allowed without a check, those in Check are
// allowed after one, and those in Deny are not allowed at all.
type SSHTest struct {
	Src    string
	Dst    []string
	Accept []string
	Check  []string
	Deny   []string

	src selector
	dst []selector
}

type rawSSHTest struct {
	Src    string   `json:"src"`
	Dst    []string `json:"dst"`
	Accept []string `json:"accept"`
	Check  []string `json:"check"`
	Deny   []string `json:"deny"`

	SrcPostureAttrs unsupported `json:"srcPostureAttrs" why:"device postures"`
}

func (v *validator) sshTest(p path, r rawSSHTest) {
	t := SSHTest{Src: trimName(r.Src), Dst: r.Dst, Accept: r.Accept, Check: r.Check, Deny: r.Deny}
	if !v.present(p.add("src")) {
		v.fail(p, "missing \"src\" (the user or tag the test connects from)")
	} else {
		sel, err := v.selectorAt(p.add("src"), r.Src, ctxSrc)
		if err == nil {
			switch sel.kind {
			case selUser, selTag, selGroup, selHost, selPrefix:
			default:
				err = fmt.Errorf("sshTests src %q must be a user, group, tag, host alias or IP", r.Src)
			}
		}
		if err != nil {
			v.fail(p.add("src"), "%v", err)
		}
		t.src = sel
	}
	v.required(p, "dst", len(r.Dst))
	for i, d := range r.Dst {
		dp := p.add("dst").add(i)
		d = trimName(d)
		if strings.HasPrefix(d, "tag:") && strings.Count(d, ":") > 1 {
			v.fail(dp, "sshTests dst %q: write the host without a port (SSH tests are about port 22)", d)
			continue
		}
		sel, err := v.selectorAt(dp, d, ctxDst)
		if err == nil {
			switch {
			case sel.kind == selPrefix && strings.Contains(d, "/"):
				err = fmt.Errorf("sshTests dst %q is a CIDR; name one host", d)
			case sel.kind == selUser, sel.kind == selTag, sel.kind == selHost, sel.kind == selPrefix:
			default:
				err = fmt.Errorf("sshTests dst %q must be a user, tag, host alias or IP", d)
			}
		}
		if err == nil && sel.kind == selHost && !sel.prefix.IsSingleIP() {
			err = fmt.Errorf("sshTests dst %q is a network; name one host", d)
		}
		if err != nil {
			v.fail(dp, "%v", err)
			continue
		}
		t.dst = append(t.dst, sel)
	}
	if len(r.Accept)+len(r.Check)+len(r.Deny) == 0 {
		v.fail(p, "ssh test has none of \"accept\", \"check\" and \"deny\"")
	}
	for _, l := range []struct {
		name string
		list []string
	}{{"accept", r.Accept}, {"check", r.Check}, {"deny", r.Deny}} {
		for i, u := range l.list {
			if strings.TrimSpace(u) == "" || strings.TrimSpace(u) == "*" {
				v.fail(p.add(l.name).add(i), "sshTests user %q is not valid; name a login such as \"root\"", u)
			}
		}
	}
	v.p.SSHTests = append(v.p.SSHTests, t)
}

// sshVerdict is what the ssh rules let src do as login on dst: the
// first matching rule decides, as in Tailscale.
func (p *Policy) sshVerdict(src, dst *node, login string) (allowed, check bool) {
	for i := range p.SSH {
		r := &p.SSH[i]
		if r.posture {
			continue
		}
		if !sshMatchesSrc(r, src) || !sshMatchesDst(r, src, dst) || !sshUserMatches(r.Users, src, login) {
			continue
		}
		return true, r.Action == "check"
	}
	return false, false
}

func sshMatchesSrc(r *SSHRule, n *node) bool {
	for i := range r.src {
		if r.src[i].matchesNode(n) {
			return true
		}
	}
	return false
}

func sshMatchesDst(r *SSHRule, src, dst *node) bool {
	for i := range r.dst {
		s := &r.dst[i]
		if s.kind == selSelf {
			if !dst.tagged && dst.User != "" && dst.User == src.User && !src.tagged {
				return true
			}
			continue
		}
		if s.matchesNode(dst) {
			return true
		}
	}
	return false
}

func sshUserMatches(users []string, src *node, login string) bool {
	local, dom, _ := strings.Cut(src.User, "@")
	for _, u := range users {
		u = strings.TrimSpace(u)
		switch {
		case u == login:
			return true
		case u == "autogroup:nonroot":
			if login != "root" {
				return true
			}
		case u == "=":
			if !src.tagged && local != "" && login == local {
				return true
			}
		case strings.HasPrefix(u, "localpart:*@"):
			if !src.tagged && strings.EqualFold(u[len("localpart:*@"):], dom) && login == local {
				return true
			}
		}
	}
	return false
}

// runSSHTests judges the sshTests on the compiled mesh c, whose probe
// nodes hold the addresses in probes. SSH rules select identities, so a
// test naming an address that only a stand-in holds (no real node has
// it yet) cannot be judged and is skipped.
func (p *Policy) runSSHTests(c *Compiled, probes map[string]netip.Addr, standIn map[netip.Addr]bool) []*Error {
	var errs []*Error
	find := func(s selector) *node {
		a, ok := probes[s.name]
		if s.kind == selHost || s.kind == selPrefix {
			a, ok = s.prefix.Addr(), true
		}
		if !ok || (s.kind == selHost || s.kind == selPrefix) && standIn[a] {
			return nil
		}
		n, viaRoute := c.ownerOf(a)
		if viaRoute {
			return nil // a LAN host runs no lanmesh SSH
		}
		return n
	}
	for i := range p.SSHTests {
		t := &p.SSHTests[i]
		src := find(t.src)
		if src == nil {
			continue
		}
		for j, d := range t.dst {
			dst := find(d)
			if dst == nil && (d.kind == selHost || d.kind == selPrefix) {
				continue // no node holds the address yet
			}
			for _, l := range []struct {
				name  string
				users []string
			}{{"accept", t.Accept}, {"check", t.Check}, {"deny", t.Deny}} {
				for k, u := range l.users {
					u = strings.TrimSpace(u)
					ok, check := false, false
					if dst != nil {
						ok, check = p.sshVerdict(src, dst, u)
					}
					var bad string
					switch l.name {
					case "accept":
						if !ok {
							bad = "was denied"
						} else if check {
							bad = "needs a check (list it under \"check\")"
						}
					case "check":
						if !ok {
							bad = "was denied"
						} else if !check {
							bad = "is allowed without a check"
						}
					case "deny":
						if ok {
							bad = "was allowed"
						}
					}
					if bad != "" {
						errs = append(errs, p.src.errAt(path{"sshTests", i, l.name, k},
							"ssh test failed: %s -> %s as %q %s", t.Src, t.Dst[j], u, bad))
					}
				}
			}
		}
	}
	return errs
}
