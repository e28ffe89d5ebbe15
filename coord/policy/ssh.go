package policy

import (
	"fmt"
	"strings"
	"time"
	"unicode"
)

// MaxCheckPeriod is the longest checkPeriod Tailscale accepts.
const MaxCheckPeriod = 168 * time.Hour

// CheckAlways is SSHRule.CheckPeriod for "checkPeriod": "always": every
// connection asks the user again.
const CheckAlways = time.Duration(-1)

// sshUser checks u, written in an SSH rule's users. Tailscale accepts
// any non-empty name but "*": root, autogroup:nonroot, "=" (the login's
// own local part), localpart:*@domain, or a login name of the target
// system (letters of any script included). lanmesh accepts the same,
// and returns a warning for a name no system account can have (with
// whitespace, ':' or '/'), since such a rule can never match.
func sshUser(u string) (warning string, err error) {
	t := strings.TrimSpace(u)
	switch {
	case t == "":
		return "", fmt.Errorf("ssh user %q is not valid; name a login such as \"root\" or \"autogroup:nonroot\"", u)
	case t == "*":
		return "", fmt.Errorf("ssh user \"*\" is not valid (as in Tailscale); name the logins, or use autogroup:nonroot")
	case t == "root", t == "autogroup:nonroot", t == "=":
		return "", nil
	case strings.HasPrefix(t, "localpart:"):
		dom, ok := strings.CutPrefix(t[len("localpart:"):], "*@")
		if !ok || dom == "" || strings.ContainsAny(dom, "*@ /:") {
			// Tailscale accepts it as a plain name, which no account has.
			return fmt.Sprintf("ssh user %q is not localpart:*@domain and can be no system account's name, so this entry never matches", u), nil
		}
		return "", nil
	}
	for _, r := range t {
		if unicode.IsSpace(r) || r == ':' || r == '/' || unicode.IsControl(r) {
			return fmt.Sprintf("ssh user %q can be no system account's name, so this entry never matches", u), nil
		}
	}
	return "", nil
}

// parseCheckPeriod reads a check rule's checkPeriod: a Go duration up
// to 168h, or "always". Empty means Tailscale's default, 12h.
func parseCheckPeriod(s string) (time.Duration, error) {
	if s == "" {
		return 12 * time.Hour, nil
	}
	if s == "always" {
		return CheckAlways, nil
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, fmt.Errorf("checkPeriod %q is not a duration like \"12h\" or \"always\"", s)
	case d == 0:
		return CheckAlways, nil // Tailscale accepts 0: ask every time
	case d < 0:
		return 0, fmt.Errorf("checkPeriod %s must be a positive duration", d)
	case d > MaxCheckPeriod:
		return 0, fmt.Errorf("checkPeriod %s is above the maximum of 168h", d)
	}
	return d, nil
}

func (v *validator) ssh(p path, r rawSSH) {
	r.Action = strings.TrimSpace(r.Action) // Tailscale reads " accept" as accept
	rule := SSHRule{Action: r.Action, Src: r.Src, Dst: r.Dst, Users: r.Users, AcceptEnv: r.AcceptEnv}
	switch {
	case r.Action == "":
		v.fail(p, "missing \"action\" (write \"accept\" or \"check\")")
	case r.Action != "accept" && r.Action != "check":
		v.fail(p.add("action"), "action %q must be \"accept\" or \"check\" (lower case)", r.Action)
	}
	if v.present(p.add("checkPeriod")) {
		d, err := parseCheckPeriod(r.CheckPeriod)
		switch {
		case err != nil:
			v.fail(p.add("checkPeriod"), "%v", err)
		case r.Action != "check":
			v.fail(p.add("checkPeriod"), "checkPeriod needs action \"check\"")
		}
		rule.CheckPeriod = d
	} else if r.Action == "check" {
		rule.CheckPeriod, _ = parseCheckPeriod("")
	}
	// As in Tailscale, src and dst may be empty lists (the rule then
	// matches nothing) but users must name someone.
	if len(r.Users) == 0 {
		v.required(p, "users", 0)
	}
	for i, e := range r.AcceptEnv {
		if strings.TrimSpace(e) == "" {
			v.fail(p.add("acceptEnv").add(i), "acceptEnv entries cannot be empty; name a variable such as \"GIT_*\"")
		}
	}
	var srcSel []selector
	for i, s := range r.Src {
		sel, err := v.selectorAt(p.add("src").add(i), s, ctxSrc)
		if err == nil {
			switch sel.kind {
			case selUser, selGroup, selTag, selMember, selTagged, selDomain, selRole:
			default:
				err = fmt.Errorf("ssh src %q must be a user, group, tag, user:*@domain or an autogroup of users (member, tagged, admin, ...)", s)
			}
		}
		if err != nil {
			v.fail(p.add("src").add(i), "%v", err)
			continue
		}
		srcSel = append(srcSel, sel)
	}
	var dstSel []selector
	for i, d := range r.Dst {
		sel, err := v.selectorAt(p.add("dst").add(i), d, ctxDst)
		if err == nil {
			switch sel.kind {
			case selUser, selTag, selSelf, selMember, selTagged:
			default:
				err = fmt.Errorf("ssh dst %q must be a user, tag, autogroup:self, autogroup:member or autogroup:tagged (not a host or IP)", d)
			}
		}
		if err != nil {
			v.fail(p.add("dst").add(i), "%v", err)
			continue
		}
		dstSel = append(dstSel, sel)
	}
	v.sshSecurity(p, r, srcSel, dstSel)
	for i, u := range r.Users {
		w, err := sshUser(u)
		if err != nil {
			v.fail(p.add("users").add(i), "%v", err)
		} else if w != "" {
			v.warn(p.add("users").add(i), "%s", w)
		}
	}
	rule.src, rule.dst = srcSel, dstSel
	rule.posture = v.postureRefs(p.add("srcPosture"), r.SrcPosture) || r.SrcPosture == nil && v.p.defaultPosture
	v.p.SSH = append(v.p.SSH, rule)
}

// sshSecurity refuses the rules Tailscale refuses because they would
// let a shared or automated identity into a person's own devices: a
// tag (or autogroup:tagged) reaching a user's devices or autogroup:self,
// and a group or another user reaching a single user's devices.
func (v *validator) sshSecurity(p path, r rawSSH, src, dst []selector) {
	for j, d := range dst {
		switch d.kind {
		case selUser, selMember, selSelf:
		default:
			continue
		}
		for i, s := range src {
			var why string
			switch {
			case s.kind == selTag || s.kind == selTagged:
				why = "a tagged device may not SSH into a user's own devices"
			case d.kind == selUser && s.kind != selUser:
				why = "only the user themselves may be the src of an SSH rule whose dst is their devices"
			case d.kind == selUser && s.name != d.name:
				why = "only the user themselves may be the src of an SSH rule whose dst is their devices"
			}
			if why != "" {
				v.fail(p.add("src").add(i), "ssh src %q with dst %q refused: %s (as Tailscale)", r.Src[i], r.Dst[j], why)
			}
		}
	}
}
