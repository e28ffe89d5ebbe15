package sdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/lanmesh/lanmesh/plugins/sdk/internal/pb"
)

// Limits on what crosses the plugin boundary; the host checks every
// answer against them, so a broken plugin cannot feed coord junk.
const (
	MaxHTTPBody    = 64 << 10
	maxURL         = 8 << 10
	maxSession     = 16 << 10
	maxSecret      = 16 << 10
	maxField       = 320
	maxGroups      = 256
	maxMessageSize = 1 << 20
)

// IdPPlugin is the go-plugin glue of the IdP kind: Serve uses it with an
// implementation, the host with none.
type IdPPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	Impl IdP
}

// GRPCServer registers the plugin's implementation (plugin side).
func (p *IdPPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterIdPServer(s, &idpServer{impl: p.Impl})
	return nil
}

// GRPCClient returns an *IdPClient (host side).
func (p *IdPPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &IdPClient{c: pb.NewIdPClient(c), health: healthpb.NewHealthClient(c)}, nil
}

// --- plugin side ---

type idpServer struct {
	pb.UnimplementedIdPServer
	impl IdP
}

func toStatus(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, ErrRefused):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, ErrBadCallback):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}

func (s *idpServer) Configure(ctx context.Context, r *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	settings := r.GetSettingsJson()
	if len(settings) == 0 {
		settings = []byte("{}")
	}
	info, err := s.impl.Configure(ctx, settings)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ConfigureResponse{DisplayName: info.DisplayName}, nil
}

func (s *idpServer) BeginLogin(ctx context.Context, r *pb.BeginLoginRequest) (*pb.BeginLoginResponse, error) {
	resp, err := s.impl.BeginLogin(ctx, BeginRequest{RedirectURL: r.GetRedirectUrl(), State: r.GetState(), Nonce: r.GetNonce(), PluginURL: r.GetPluginUrl()})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.BeginLoginResponse{AuthUrl: resp.AuthURL, Session: resp.Session}, nil
}

func (s *idpServer) CompleteLogin(ctx context.Context, r *pb.CompleteLoginRequest) (*pb.CompleteLoginResponse, error) {
	id, err := s.impl.CompleteLogin(ctx, CompleteRequest{
		RedirectURL: r.GetRedirectUrl(), State: r.GetState(), Nonce: r.GetNonce(),
		Session: r.GetSession(), Query: fromValues(r.GetQuery()),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.CompleteLoginResponse{Identity: toPBIdentity(id)}, nil
}

func (s *idpServer) Refresh(ctx context.Context, r *pb.RefreshRequest) (*pb.RefreshResponse, error) {
	id, err := s.impl.Refresh(ctx, fromPBIdentity(r.GetIdentity()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.RefreshResponse{Identity: toPBIdentity(id)}, nil
}

// HTTP runs the plugin's http.Handler, if it has one, on a request coord
// forwarded.
func (s *idpServer) HTTP(ctx context.Context, r *pb.HTTPRequest) (*pb.HTTPResponse, error) {
	h, ok := s.impl.(http.Handler)
	if !ok {
		return &pb.HTTPResponse{Status: http.StatusNotFound, Body: []byte("this identity provider serves no pages\n")}, nil
	}
	u := &url.URL{Path: "/" + strings.TrimPrefix(r.GetPath(), "/"), RawQuery: r.GetRawQuery()}
	req, err := http.NewRequestWithContext(ctx, r.GetMethod(), u.String(), bytes.NewReader(r.GetBody()))
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	req.Header = http.Header(fromValues(r.GetHeader()))
	req.Header.Set(HeaderPluginURL, r.GetPluginUrl())
	rec := &recorder{header: http.Header{}}
	h.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return &pb.HTTPResponse{Status: int32(rec.status), Header: toValues(url.Values(rec.header)), Body: rec.body.Bytes()}, nil
}

// HeaderPluginURL carries BeginRequest.PluginURL into a plugin's
// http.Handler, so its pages can link to themselves.
const HeaderPluginURL = "X-Lanmesh-Plugin-Url"

// recorder is a minimal http.ResponseWriter that keeps the answer.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	if r.body.Len()+len(b) > MaxHTTPBody {
		return 0, fmt.Errorf("response larger than %d bytes", MaxHTTPBody)
	}
	return r.body.Write(b)
}

// --- host side ---

// IdPClient is the host's view of a running IdP plugin. Every answer is
// checked against the package limits before coord sees it.
type IdPClient struct {
	c      pb.IdPClient
	health healthpb.HealthClient
}

func fromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := st.Message()
	switch st.Code() {
	case codes.PermissionDenied:
		return &remoteError{ErrRefused, msg}
	case codes.InvalidArgument:
		return &remoteError{ErrBadCallback, msg}
	case codes.DeadlineExceeded:
		return &remoteError{context.DeadlineExceeded, "no answer in time"}
	case codes.Canceled:
		return &remoteError{context.Canceled, "call canceled"}
	case codes.Unavailable:
		return fmt.Errorf("plugin unavailable: %s", msg)
	}
	return errors.New(msg)
}

// Health asks the plugin's gRPC health service (served by go-plugin).
func (c *IdPClient) Health(ctx context.Context) error {
	resp, err := c.health.Check(ctx, &healthpb.HealthCheckRequest{Service: "plugin"})
	if err != nil {
		return fromStatus(err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("plugin reports %s", resp.GetStatus())
	}
	return nil
}

// Configure implements IdP.
func (c *IdPClient) Configure(ctx context.Context, settings []byte) (Info, error) {
	resp, err := c.c.Configure(ctx, &pb.ConfigureRequest{SettingsJson: settings}, grpc.MaxCallRecvMsgSize(maxMessageSize))
	if err != nil {
		return Info{}, fromStatus(err)
	}
	if err := checkText("display name", resp.GetDisplayName(), maxField); err != nil {
		return Info{}, err
	}
	return Info{DisplayName: resp.GetDisplayName()}, nil
}

// BeginLogin implements IdP.
func (c *IdPClient) BeginLogin(ctx context.Context, req BeginRequest) (BeginResponse, error) {
	resp, err := c.c.BeginLogin(ctx, &pb.BeginLoginRequest{RedirectUrl: req.RedirectURL, State: req.State, Nonce: req.Nonce, PluginUrl: req.PluginURL}, grpc.MaxCallRecvMsgSize(maxMessageSize))
	if err != nil {
		return BeginResponse{}, fromStatus(err)
	}
	if len(resp.GetSession()) > maxSession {
		return BeginResponse{}, fmt.Errorf("plugin returned a session of %d bytes (limit %d)", len(resp.GetSession()), maxSession)
	}
	if err := CheckAuthURL(resp.GetAuthUrl()); err != nil {
		return BeginResponse{}, err
	}
	return BeginResponse{AuthURL: resp.GetAuthUrl(), Session: resp.GetSession()}, nil
}

// CheckAuthURL accepts only an absolute http(s) URL of sane length.
func CheckAuthURL(s string) error {
	if len(s) > maxURL {
		return fmt.Errorf("plugin returned an auth URL of %d bytes (limit %d)", len(s), maxURL)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("plugin returned auth URL %q: want an absolute http(s) URL", s)
	}
	return nil
}

// CompleteLogin implements IdP.
func (c *IdPClient) CompleteLogin(ctx context.Context, req CompleteRequest) (Identity, error) {
	resp, err := c.c.CompleteLogin(ctx, &pb.CompleteLoginRequest{
		RedirectUrl: req.RedirectURL, State: req.State, Nonce: req.Nonce, Session: req.Session, Query: toValues(req.Query),
	}, grpc.MaxCallRecvMsgSize(maxMessageSize))
	if err != nil {
		return Identity{}, fromStatus(err)
	}
	id := fromPBIdentity(resp.GetIdentity())
	return id, CheckIdentity(id)
}

// Refresh implements IdP.
func (c *IdPClient) Refresh(ctx context.Context, id Identity) (Identity, error) {
	resp, err := c.c.Refresh(ctx, &pb.RefreshRequest{Identity: toPBIdentity(id)}, grpc.MaxCallRecvMsgSize(maxMessageSize))
	if err != nil {
		return Identity{}, fromStatus(err)
	}
	nid := fromPBIdentity(resp.GetIdentity())
	if err := CheckIdentity(nid); err != nil {
		return Identity{}, err
	}
	if nid.Subject != id.Subject {
		return Identity{}, fmt.Errorf("plugin changed the subject on refresh (%q to %q)", id.Subject, nid.Subject)
	}
	return nid, nil
}

// HTTPResponse is a page a plugin served.
type HTTPResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

// HTTP forwards a browser request to the plugin. path is below pluginURL.
func (c *IdPClient) HTTP(ctx context.Context, r *http.Request, pluginURL, path string) (HTTPResponse, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxHTTPBody+1))
	if err != nil {
		return HTTPResponse{}, fmt.Errorf("reading request body: %w", err)
	}
	if len(body) > MaxHTTPBody {
		return HTTPResponse{}, fmt.Errorf("request body larger than %d bytes", MaxHTTPBody)
	}
	// Only headers a form needs: cookies and credentials of coord itself
	// stay out of the plugin.
	h := url.Values{}
	for _, k := range []string{"Content-Type", "Accept", "Accept-Language", "User-Agent"} {
		if v := r.Header.Values(k); len(v) > 0 {
			h[k] = v
		}
	}
	resp, err := c.c.HTTP(ctx, &pb.HTTPRequest{Method: r.Method, Path: path, RawQuery: r.URL.RawQuery, Header: toValues(h), Body: body, PluginUrl: pluginURL}, grpc.MaxCallRecvMsgSize(maxMessageSize))
	if err != nil {
		return HTTPResponse{}, fromStatus(err)
	}
	st := int(resp.GetStatus())
	if st < 100 || st > 599 {
		return HTTPResponse{}, fmt.Errorf("plugin answered with HTTP status %d", st)
	}
	if len(resp.GetBody()) > MaxHTTPBody {
		return HTTPResponse{}, fmt.Errorf("plugin answered with %d bytes (limit %d)", len(resp.GetBody()), MaxHTTPBody)
	}
	return HTTPResponse{Status: st, Header: http.Header(fromValues(resp.GetHeader())), Body: resp.GetBody()}, nil
}

// CheckIdentity validates an identity a plugin returned.
func CheckIdentity(id Identity) error {
	if id.Subject == "" {
		return errors.New("plugin returned an identity without a subject")
	}
	for _, f := range []struct{ name, v string }{{"subject", id.Subject}, {"email", id.Email}, {"name", id.Name}} {
		if err := checkText(f.name, f.v, maxField); err != nil {
			return err
		}
	}
	if len(id.Groups) > maxGroups {
		return fmt.Errorf("plugin returned %d groups (limit %d)", len(id.Groups), maxGroups)
	}
	for _, g := range id.Groups {
		if g == "" {
			return errors.New("plugin returned an empty group name")
		}
		if err := checkText("group", g, maxField); err != nil {
			return err
		}
	}
	if len(id.Secret) > maxSecret {
		return fmt.Errorf("plugin returned a secret of %d bytes (limit %d)", len(id.Secret), maxSecret)
	}
	return nil
}

func checkText(what, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("plugin returned a %s of %d bytes (limit %d)", what, len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("plugin returned a %s that is not UTF-8", what)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("plugin returned a %s with control characters", what)
		}
	}
	return nil
}

func toPBIdentity(id Identity) *pb.Identity {
	return &pb.Identity{Subject: id.Subject, Email: id.Email, Name: id.Name, Groups: id.Groups, Secret: id.Secret}
}

func fromPBIdentity(p *pb.Identity) Identity {
	return Identity{Subject: p.GetSubject(), Email: p.GetEmail(), Name: p.GetName(), Groups: p.GetGroups(), Secret: p.GetSecret()}
}

func toValues(v url.Values) map[string]*pb.Values {
	m := make(map[string]*pb.Values, len(v))
	for k, vs := range v {
		m[k] = &pb.Values{Values: vs}
	}
	return m
}

func fromValues(m map[string]*pb.Values) url.Values {
	v := make(url.Values, len(m))
	for k, vs := range m {
		v[k] = vs.GetValues()
	}
	return v
}
