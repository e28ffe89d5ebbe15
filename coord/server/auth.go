package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/lanmesh/lanmesh/coord/store"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

func (s *Server) handleChallenge(w http.ResponseWriter, r *http.Request) {
	now := s.cfg.Now()
	ok, retry := s.anon.allow(sourceKey(r.RemoteAddr), now)
	if !ok {
		var mk key.MachinePublic
		if h := r.Header.Get(wire.HeaderMachine); h != "" && mk.UnmarshalText([]byte(h)) == nil {
			var mretry = retry
			if ok, mretry = s.machines.allowChallenge(mk, now); !ok && mretry > 0 {
				retry = min(retry, mretry)
			}
		}
	}
	if !ok {
		tooMany(w, retry, "challenges")
		return
	}
	n, err := s.nonces.issue()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal error; see coord's log")
		s.log.Error("challenge: issue nonce", "err", err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, wire.Challenge{Nonce: n})
}

// verify reads and authenticates a signed request for path: envelope
// shape, the nonce's MAC and age, the machine key's signature, and that
// a known machine has not used the nonce before. Requests from machines
// coord does not know (first registrations) are rate-limited per source
// address instead; known ones are not (S18). On failure it has already
// answered.
func (s *Server) verify(w http.ResponseWriter, r *http.Request, path string) (key.MachinePublic, []byte, usedNonce, bool) {
	var none key.MachinePublic
	var nu usedNonce
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeErr(w, http.StatusMethodNotAllowed, "use POST")
		return none, nil, nu, false
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, wire.MaxRequestBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeErr(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", wire.MaxRequestBytes))
		} else {
			writeErr(w, http.StatusBadRequest, "reading request body failed")
		}
		return none, nil, nu, false
	}
	env, err := decodeEnvelope(b)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return none, nil, nu, false
	}
	id, exp, err := s.nonces.check(env.Nonce)
	if err != nil {
		writeErr(w, http.StatusUnauthorized, err.Error())
		return none, nil, nu, false
	}
	if !env.Machine.Verify(wire.SignedBytes(path, env.Nonce, env.Body), env.Sig) {
		writeErr(w, http.StatusUnauthorized, "bad signature")
		return none, nil, nu, false
	}
	mk := env.Machine
	now := s.cfg.Now()
	if !s.machines.known(mk) {
		if ok, retry := s.register.allow(sourceKey(r.RemoteAddr), now); !ok {
			tooMany(w, retry, "requests from unregistered machines")
			return none, nil, nu, false
		}
		_, err := s.st.NodeByMachine(r.Context(), mk)
		switch {
		case errors.Is(err, store.ErrNotFound):
			// Not recorded here: the table is for known machines only.
			// handleRegister records the nonce once the machine is
			// registered, so replaying a registration fails afterwards.
			return mk, env.Body, usedNonce{id, exp}, true
		case err != nil:
			s.log.Error("verify: load machine", "machine", mk, "err", err)
			writeErr(w, http.StatusInternalServerError, "internal error; see coord's log")
			return none, nil, nu, false
		}
	}
	if !s.machines.use(mk, id, exp, now) {
		writeErr(w, http.StatusUnauthorized, "nonce already used: fetch a new challenge")
		return none, nil, nu, false
	}
	return mk, env.Body, usedNonce{id, exp}, true
}
