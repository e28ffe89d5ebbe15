// Command lanmesh-idp-local is lanmesh-coord's local-users identity
// provider plugin (plugins/idp/local): passwords and TOTP codes from a
// JSON file, with its own login form. Coord starts it from its plugins
// directory. By hand it prepares entries of the users file:
//
//	lanmesh-idp-local hash-password < password.txt
//	lanmesh-idp-local new-totp ann
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/bcrypt"

	"github.com/lanmesh/lanmesh/plugins/idp/local"
	"github.com/lanmesh/lanmesh/plugins/sdk"
)

func main() {
	if len(os.Args) > 1 {
		os.Exit(tool(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	sdk.ServeIdP(&local.IdP{})
}

const usage = `usage:
  lanmesh-idp-local hash-password   read a password (first line of stdin), print its bcrypt hash
  lanmesh-idp-local new-totp USER   print a new TOTP secret and its otpauth:// URL for USER
Without arguments it is a plugin that lanmesh-coord starts (docs/plugins.md).
`

func tool(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	switch {
	case args[0] == "hash-password" && len(args) == 1:
		line, err := bufio.NewReader(stdin).ReadString('\n')
		pw := strings.TrimRight(line, "\r\n")
		if (err != nil && err != io.EOF) || pw == "" {
			fmt.Fprintln(stderr, "lanmesh-idp-local: no password on stdin")
			return 1
		}
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
		if err != nil {
			fmt.Fprintln(stderr, "lanmesh-idp-local:", err)
			return 1
		}
		fmt.Fprintln(stdout, string(h))
		return 0
	case args[0] == "new-totp" && len(args) == 2:
		k, err := totp.Generate(totp.GenerateOpts{Issuer: "lanmesh", AccountName: args[1]})
		if err != nil {
			fmt.Fprintln(stderr, "lanmesh-idp-local:", err)
			return 1
		}
		fmt.Fprintf(stdout, "totp_secret: %s\nurl: %s\n", k.Secret(), k.URL())
		return 0
	}
	fmt.Fprint(stderr, usage)
	return 2
}
