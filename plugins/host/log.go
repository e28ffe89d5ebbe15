package host

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// maxLogLine caps one plugin log line; longer lines are cut.
const maxLogLine = 8 << 10

// stderrLog turns a plugin's stderr into slog records. go-plugin can parse
// the lines itself, but its parser panics on a JSON line whose "@message"
// is not a string, which would take coord down; so go-plugin is told its
// logger is off (see hclogAdapter.GetLevel) and the raw lines come here.
type stderrLog struct {
	log *slog.Logger
	mu  sync.Mutex
	buf []byte
	cut bool // the current line was cut at maxLogLine
}

// Write implements io.Writer; go-plugin writes a line and its newline in
// separate calls.
func (s *stderrLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		room := maxLogLine - len(s.buf)
		if len(chunk) > room {
			s.buf = append(s.buf, chunk[:room]...)
			s.cut = true
		} else {
			s.buf = append(s.buf, chunk...)
		}
		if i < 0 {
			break
		}
		s.emit()
		p = p[i+1:]
	}
	return n, nil
}

func (s *stderrLog) emit() {
	line := strings.TrimSpace(string(bytes.ToValidUTF8(s.buf, []byte("?"))))
	cut := s.cut
	s.buf, s.cut = s.buf[:0], false
	if line == "" {
		return
	}
	level, msg, attrs := parseLine(line)
	if cut {
		attrs = append(attrs, slog.Bool("truncated", true))
	}
	s.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// parseLine reads an hclog JSON line ({"@level": "info", "@message": ...,
// other keys as attributes}); anything else is logged whole at debug, or
// at the level of an hclog "[WARN]"-style prefix.
func parseLine(line string) (slog.Level, string, []slog.Attr) {
	var m map[string]any
	if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &m) == nil {
		msg, _ := m["@message"].(string)
		lv, _ := m["@level"].(string)
		delete(m, "@message")
		delete(m, "@level")
		delete(m, "@timestamp")
		delete(m, "@module")
		attrs := make([]slog.Attr, 0, len(m))
		for k, v := range m {
			attrs = append(attrs, slog.Any(k, v))
		}
		return levelOf(lv), msg, attrs
	}
	for _, p := range []string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR"} {
		if strings.HasPrefix(line, "["+p+"]") {
			return levelOf(p), strings.TrimSpace(line[len(p)+2:]), nil
		}
	}
	return slog.LevelDebug, line, nil
}

func levelOf(s string) slog.Level {
	switch strings.ToLower(s) {
	case "error":
		return slog.LevelError
	case "warn", "warning":
		return slog.LevelWarn
	case "info":
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

// hclogAdapter gives go-plugin's own messages (start, exit, negotiation)
// to slog at debug level; they are about the plumbing, not the plugin.
type hclogAdapter struct {
	log  *slog.Logger
	name string
	args []any
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func (h *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	l := slog.LevelDebug
	if level >= hclog.Error {
		l = slog.LevelWarn
	}
	h.log.Log(context.Background(), l, "go-plugin: "+msg, append(append([]any{}, h.args...), sanitize(args)...)...)
}

// sanitize keeps go-plugin's key/value pairs well-formed for slog.
func sanitize(args []any) []any {
	out := make([]any, 0, len(args))
	for i := 0; i+1 < len(args); i += 2 {
		out = append(out, fmt.Sprint(args[i]), args[i+1])
	}
	return out
}

func (h *hclogAdapter) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogAdapter) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogAdapter) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hclogAdapter) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogAdapter) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }
func (h *hclogAdapter) IsTrace() bool                 { return false }
func (h *hclogAdapter) IsDebug() bool                 { return true }
func (h *hclogAdapter) IsInfo() bool                  { return true }
func (h *hclogAdapter) IsWarn() bool                  { return true }
func (h *hclogAdapter) IsError() bool                 { return true }
func (h *hclogAdapter) ImpliedArgs() []any            { return h.args }
func (h *hclogAdapter) With(args ...any) hclog.Logger {
	return &hclogAdapter{log: h.log, name: h.name, args: append(append([]any{}, h.args...), sanitize(args)...)}
}
func (h *hclogAdapter) Name() string { return h.name }
func (h *hclogAdapter) Named(name string) hclog.Logger {
	return &hclogAdapter{log: h.log, name: h.name + "." + name, args: h.args}
}
func (h *hclogAdapter) ResetNamed(name string) hclog.Logger {
	return &hclogAdapter{log: h.log, name: name, args: h.args}
}
func (h *hclogAdapter) SetLevel(hclog.Level) {}

// GetLevel says Off so that go-plugin never parses plugin stderr itself
// (its parser can panic on hostile input); stderrLog does it instead.
func (h *hclogAdapter) GetLevel() hclog.Level { return hclog.Off }
func (h *hclogAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return slog.NewLogLogger(h.log.Handler(), slog.LevelDebug)
}
func (h *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &stderrLog{log: h.log}
}
