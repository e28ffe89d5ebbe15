package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
)

var auditListCmd = &command{
	name:    "audit list",
	summary: "list the audit log: admin actions and logins, newest first (who, what, target, when, from where, result)",
	examples: []string{
		"lanmesh-coord audit list",
		"lanmesh-coord audit list --since 24h --actor apikey",
		"lanmesh-coord audit list --since 2026-12-01T00:00:00Z --actor alice --limit 20 --json",
		"lanmesh-coord --server https://coord.example.net --api-key-file ~/.lanmesh-key audit list",
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		asJSON := fs.Bool("json", false, "print JSON")
		since := fs.String("since", "", "only events since this long ago (24h, 7d) or this time (RFC 3339, 2026-12-01T00:00:00Z)")
		actor := fs.String("actor", "", "only events of this actor (a user, an API key ID, a uid like \"uid 0\") or actor kind (socket, apikey, web, user, node, system)")
		limit := fs.Int("limit", 100, "at most this many events")
		return func(ctx context.Context, g *globals, args []string) error {
			if len(args) != 0 {
				return usageError{"audit list takes no arguments"}
			}
			q := url.Values{}
			if *since != "" {
				t, err := parseSince(*since, time.Now())
				if err != nil {
					return usageError{"--since " + err.Error()}
				}
				q.Set("since", t.UTC().Format(time.RFC3339Nano))
			}
			if *actor != "" {
				q.Set("actor", *actor)
			}
			if *limit <= 0 || *limit > 10000 {
				return usageError{"--limit: want 1 to 10000"}
			}
			q.Set("limit", strconv.Itoa(*limit))
			var evs []adminapi.AuditEvent
			if err := admin(g).Do(ctx, "GET", adminapi.PathAudit+"?"+q.Encode(), nil, &evs); err != nil {
				return err
			}
			if *asJSON {
				if evs == nil {
					evs = []adminapi.AuditEvent{}
				}
				return printJSON(g.stdout, evs)
			}
			var rows [][]string
			for _, e := range evs {
				rows = append(rows, []string{e.Time.Local().Format("2006-01-02 15:04:05"), e.ActorKind + ":" + orDash(e.Actor), orDash(e.Source),
					e.Action, orDash(e.Target), e.Result, orDash(e.Detail)})
			}
			return table(g.stdout, "TIME\tACTOR\tSOURCE\tACTION\tTARGET\tRESULT\tDETAIL", rows)
		}
	},
}

// parseSince reads --since: a lifetime back from now (ParseExpiry's
// forms) or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := adminapi.ParseExpiry(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want a duration back from now like 24h or 7d, or a time like 2026-12-01T00:00:00Z", s)
	}
	return now.Add(-d), nil
}

var apikeysCreateCmd = &command{
	name:    "apikeys create",
	summary: "create an API key for remote admin (--server); printed once, coord keeps only its hash",
	examples: []string{
		"lanmesh-coord apikeys create --scope admin --expiry 90d --description laptop > ~/.lanmesh-key && chmod 600 ~/.lanmesh-key",
		"lanmesh-coord apikeys create --scope read --expiry 30d --description monitoring",
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		scope := fs.String("scope", "read", "what the key may do: read (list and read only) or admin (everything the admin socket can do)")
		expiry := fs.String("expiry", "90d", "how long the key works: days (90d) or a duration (720h); at most 1825d")
		desc := fs.String("description", "", "a note shown in apikeys list (what the key is for)")
		asJSON := fs.Bool("json", false, "print JSON (the key in \"key\")")
		return func(ctx context.Context, g *globals, args []string) error {
			if len(args) != 0 {
				return usageError{"apikeys create takes no arguments"}
			}
			if *scope != "read" && *scope != "admin" {
				return usageError{fmt.Sprintf("--scope %q: want read or admin", *scope)}
			}
			if _, err := adminapi.ParseExpiry(*expiry); err != nil {
				return usageError{"--expiry " + err.Error()}
			}
			var k adminapi.APIKey
			if err := admin(g).Do(ctx, "POST", adminapi.PathAPIKeys, adminapi.CreateAPIKeyRequest{Scope: *scope, Expiry: *expiry, Description: *desc}, &k); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(g.stdout, k)
			}
			_, err := fmt.Fprintln(g.stdout, k.Key)
			return err
		}
	},
}

var apikeysListCmd = &command{
	name:     "apikeys list",
	summary:  "list API keys (ids, scopes and state, never secrets)",
	examples: []string{"lanmesh-coord apikeys list", "lanmesh-coord apikeys list --json"},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		asJSON := fs.Bool("json", false, "print JSON")
		return func(ctx context.Context, g *globals, args []string) error {
			if len(args) != 0 {
				return usageError{"apikeys list takes no arguments"}
			}
			var keys []adminapi.APIKey
			if err := admin(g).Do(ctx, "GET", adminapi.PathAPIKeys, nil, &keys); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(g.stdout, keys)
			}
			var rows [][]string
			now := time.Now()
			for _, k := range keys {
				state := "valid"
				switch {
				case !k.Revoked.IsZero():
					state = "revoked"
				case !now.Before(k.Expiry):
					state = "expired"
				}
				rows = append(rows, []string{k.ID, k.Scope, state, when(k.Expiry), when(k.LastUsed), k.CreatedBy, orDash(k.Description)})
			}
			return table(g.stdout, "ID\tSCOPE\tSTATE\tEXPIRES\tLAST USED\tCREATED BY\tDESCRIPTION", rows)
		}
	},
}

var apikeysRevokeCmd = &command{
	name:     "apikeys revoke",
	args:     "ID",
	summary:  "revoke an API key: its next request is refused",
	examples: []string{"lanmesh-coord apikeys revoke 3f2a9c01b7d4"},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		asJSON := fs.Bool("json", false, "print JSON")
		return func(ctx context.Context, g *globals, args []string) error {
			if len(args) != 1 {
				return usageError{"apikeys revoke takes the key's ID (apikeys list)"}
			}
			var k adminapi.APIKey
			if err := admin(g).Do(ctx, "POST", adminapi.APIKeyPath(args[0])+"/revoke", nil, &k); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(g.stdout, k)
			}
			_, err := fmt.Fprintf(g.stdout, "API key %s revoked\n", k.ID)
			return err
		}
	},
}
