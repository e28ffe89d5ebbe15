// Package lint holds lanmesh's own static checks, run by `make lint` and by
// the vet phase of `make test` through cmd/lanmesh-vet (go vet -vettool):
//
//   - secretcmp: secrets (keys, tokens, MACs, nonces, relay credentials,
//     auth-key hashes, certificate pins) are compared only in constant
//     time, through key.Equal or crypto/subtle (S8);
//   - rawskip: tests skip only through internal/testenv, so that under
//     CI=true a test that lacks root, a tool or a kernel feature fails
//     instead of skipping.
//
// Each check lives in its own package with tests that feed it known-bad
// code and require a report.
package lint
