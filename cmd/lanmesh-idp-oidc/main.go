// Command lanmesh-idp-oidc is lanmesh-coord's OpenID Connect identity
// provider plugin (plugins/idp/oidc). Coord starts it from its plugins
// directory; run by hand it only says so. docs/identity.md has set-ups
// for Google, Microsoft Entra, Authentik, Keycloak and others.
package main

import (
	"github.com/lanmesh/lanmesh/plugins/idp/oidc"
	"github.com/lanmesh/lanmesh/plugins/sdk"
)

func main() { sdk.ServeIdP(&oidc.IdP{}) }
