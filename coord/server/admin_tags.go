package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/coord/policy"
	"github.com/lanmesh/lanmesh/coord/store"
)

// SetNodeTags replaces a node's tags, as an admin does in Tailscale's
// console: the node then counts as its tags in policies (no longer as
// its user's device) and its key stops expiring. Each tag must be
// well-formed and, when a policy is set, declared in its tagOwners (an
// admin may apply any declared tag). Removing every tag is refused: a
// tagged device becomes a person's again only by logging in again.
func (a *Admin) SetNodeTags(ctx context.Context, who Actor, ref string, tags []string) (adminapi.Node, error) {
	var out adminapi.Node
	err := a.do(ctx, who, "node.tags", ref, func() (string, error) {
		n, err := a.s.findNode(ctx, ref)
		if err != nil {
			return "", err
		}
		var clean []string
		for _, t := range tags {
			t = strings.TrimSpace(t)
			if !tagRE.MatchString(t) {
				return "", badRequest("tag %q: want tag:name (lower-case letters, digits, hyphens)", t)
			}
			if !slices.Contains(clean, t) {
				clean = append(clean, t)
			}
		}
		if len(clean) == 0 {
			return "", badRequest("no tags given: a node keeps at least one tag; to make it a person's device again, log it in again (lanmesh up --force-reauth)")
		}
		if err := a.s.checkTagsDeclared(ctx, clean); err != nil {
			return "", err
		}
		old := n.Tags
		n, err = a.s.st.SetNodeTags(ctx, n.ID, clean)
		if err != nil {
			return "", err
		}
		a.s.hub.Changed() // policies match the node by its new tags
		a.s.log.Info("node tags set", "node", n.Name, "id", n.ID, "tags", n.Tags, "by", who.String())
		out = a.s.apiNode(n, false, a.s.expiryOffOrFalse(ctx, n.ID))
		return fmt.Sprintf("%v to %v", old, n.Tags), nil
	})
	return out, err
}

// checkTagsDeclared refuses tags the current policy's tagOwners does not
// declare; with no policy set any well-formed tag goes (the default
// policy has no tagOwners).
func (s *Server) checkTagsDeclared(ctx context.Context, tags []string) error {
	pv, err := s.st.Policy(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	p, err := policy.Parse(fmt.Sprintf("policy-v%d", pv.Version), []byte(pv.Body))
	if err != nil {
		return badRequest("the stored policy (version %d) does not parse, so no tag can be checked: set a valid policy first", pv.Version)
	}
	for _, t := range tags {
		if _, ok := p.TagOwners[t]; !ok {
			return badRequest("tag %q is not in the policy's tagOwners: declare it there first", t)
		}
	}
	return nil
}
