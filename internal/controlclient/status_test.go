package controlclient

import (
	"errors"
	"net/http/httptest"
	"testing"
	"time"
)

// coord's 429 carries Retry-After; the error keeps it and says Busy.
func TestStatusErrRetryAfter(t *testing.T) {
	for _, tt := range []struct {
		code   int
		header string
		busy   bool
		want   time.Duration
	}{
		{429, "3", true, 3 * time.Second},
		{503, "10", true, 10 * time.Second},
		{429, "", true, 0},
		{429, "soon", true, 0},
		{429, "86400", true, 5 * time.Minute},
		{401, "3", false, 3 * time.Second},
	} {
		w := httptest.NewRecorder()
		if tt.header != "" {
			w.Header().Set("Retry-After", tt.header)
		}
		w.WriteHeader(tt.code)
		w.WriteString(`{"error":"too many challenges from your address; retry in 3 s"}`)
		var se *StatusError
		if err := statusErr(w.Result()); !errors.As(err, &se) || se.Busy() != tt.busy || se.RetryAfter != tt.want {
			t.Errorf("%d Retry-After %q: %#v", tt.code, tt.header, err)
		}
	}
}
