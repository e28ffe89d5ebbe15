package localapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Backend does the work behind the API; the daemon implements it.
type Backend interface {
	Status(ctx context.Context) Status
	Up(ctx context.Context, req UpRequest) (UpResponse, error)
	Down(ctx context.Context) error
	Ping(ctx context.Context, req PingRequest) (PingResponse, error)
}

// Error is an error with the HTTP status the API answers with. Backends
// return it for the user's mistakes (400) and coord refusals.
type Error struct {
	Code int
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// BadRequest is a 400 error with msg.
func BadRequest(format string, a ...any) error {
	return &Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf(format, a...)}
}

// maxBodyBytes caps request bodies; real ones are a few hundred bytes.
const maxBodyBytes = 64 << 10

// Server serves the local API on a unix socket.
type Server struct {
	b   Backend
	log *slog.Logger
	hs  *http.Server
	ln  net.Listener
	// path is the socket's path, removed by Close.
	path string
}

// Listen creates the socket at path: its directory 0755, the socket 0600,
// so only root can drive the agent. A stale socket left by a crash is
// replaced; a live one (another agent) is an error.
func Listen(path string, b Backend, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("local API socket dir: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("local API socket %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("local API socket %s: another lanmesh agent is running", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	ln, err := listenPrivate(path)
	if err != nil {
		return nil, err
	}
	s := &Server{b: b, log: log, ln: ln, path: path}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathStatus, s.status)
	mux.HandleFunc("POST "+PathUp, s.up)
	mux.HandleFunc("POST "+PathDown, s.down)
	mux.HandleFunc("POST "+PathPing, s.ping)
	mux.HandleFunc("GET "+PathNetcheck, s.netcheck)
	s.loginRoutes(mux)
	s.whoisRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case PathStatus, PathUp, PathDown, PathPing:
			writeErr(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on "+r.URL.Path)
			return
		}
		writeErr(w, http.StatusNotFound, "no such local API endpoint: "+r.Method+" "+r.URL.Path)
	})
	s.hs = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return s, nil
}

// Serve serves until Close; it returns nil after Close.
func (s *Server) Serve() error {
	err := s.hs.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops the server and removes the socket.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.hs.Shutdown(ctx)
	if err != nil {
		s.hs.Close()
	}
	os.Remove(s.path)
	return err
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.b.Status(r.Context()))
}

func (s *Server) up(w http.ResponseWriter, r *http.Request) {
	var req UpRequest
	if !readJSON(w, r, &req) {
		return
	}
	resp, err := s.b.Up(r.Context(), req)
	if err != nil {
		s.fail(w, "up", err)
		return
	}
	writeJSON(w, resp)
}

func (s *Server) down(w http.ResponseWriter, r *http.Request) {
	if err := s.b.Down(r.Context()); err != nil {
		s.fail(w, "down", err)
		return
	}
	writeJSON(w, struct{}{})
}

func (s *Server) ping(w http.ResponseWriter, r *http.Request) {
	var req PingRequest
	if !readJSON(w, r, &req) {
		return
	}
	resp, err := s.b.Ping(r.Context(), req)
	if err != nil {
		s.fail(w, "ping", err)
		return
	}
	writeJSON(w, resp)
}

func (s *Server) fail(w http.ResponseWriter, op string, err error) {
	code := http.StatusInternalServerError
	var e *Error
	if errors.As(err, &e) {
		code = e.Code
	}
	s.log.Info("local API request failed", "op", op, "err", err)
	writeErr(w, code, err.Error())
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	return ReadJSON(w, r, v, maxBodyBytes)
}

func writeJSON(w http.ResponseWriter, v any) { WriteJSON(w, v) }

func writeErr(w http.ResponseWriter, code int, msg string) { WriteError(w, code, msg) }

// ReadJSON decodes a request body of at most limit bytes into v, refusing
// unknown fields; on failure it answers 400 and returns false. The web
// page (agent/webui) shares it with the socket.
func ReadJSON(w http.ResponseWriter, r *http.Request, v any, limit int64) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		WriteError(w, http.StatusBadRequest, "bad request body: "+err.Error())
		return false
	}
	return true
}

// WriteJSON answers 200 with v as JSON.
func WriteJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// WriteError answers code with {"error": msg}, the local API's error body.
func WriteError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(errorBody{Error: msg})
}
