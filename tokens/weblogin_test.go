package tokens

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/xoauthd/xoauthd/config"
	"github.com/xoauthd/xoauthd/internal/testidp"
)

// TestAuthCodeLoginRedirect: a login whose redirect the caller serves
// sends the given redirect URI, refuses a state it did not send, explains
// the provider's refusal, and stores the tokens on Finish.
func TestAuthCodeLoginRedirect(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	store, _ := newStore(t)
	p := msProvider(idp, publicClient, "", config.FlowAuthCode)
	l, err := NewAuthCodeLogin(p, alice, "http://localhost:9925/")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(l.URL())
	if q := u.Query(); q.Get("redirect_uri") != "http://localhost:9925/" || q.Get("state") != l.State() || q.Get("login_hint") != alice {
		t.Fatalf("authorize URL %s", u)
	}
	redirect, err := idp.Authorize(l.URL())
	if err != nil {
		t.Fatal(err)
	}
	back, _ := url.Parse(redirect)
	forged := back.Query()
	forged.Set("state", "other")
	if _, err := l.Code(forged); !errors.Is(err, ErrStateMismatch) {
		t.Fatalf("forged state: %v", err)
	}
	declined := url.Values{"state": {l.State()}, "error": {"access_denied"}, "error_description": {"AADSTS65004: User declined to consent."}}
	if _, err := l.Code(declined); err == nil || !strings.Contains(err.Error(), "AADSTS65004") {
		t.Fatalf("declined: %v", err)
	}
	if _, err := l.Code(url.Values{"state": {l.State()}}); err == nil {
		t.Fatal("a redirect without code or error was accepted")
	}
	code, err := l.Code(back.Query())
	if err != nil {
		t.Fatal(err)
	}
	res, err := l.Finish(ctxT(t), store, code, nil)
	if err != nil || !strings.EqualFold(res.User, alice) || res.Flow != config.FlowAuthCode {
		t.Fatalf("Finish: %+v %v", res, err)
	}
	if rec := mustGet(t, store, alice); rec.RefreshToken == "" {
		t.Fatal("nothing stored")
	}
	if _, err := NewAuthCodeLogin(msProvider(idp, confClient, confSecret, config.FlowClientCredentials), alice, "http://localhost/"); !errors.Is(err, ErrNoLoginNeeded) {
		t.Fatalf("client credentials: %v", err)
	}
}

// TestDeviceLoginWait: a device login shown by the caller stores the
// tokens of the account that approved it, and refuses another account.
func TestDeviceLoginWait(t *testing.T) {
	idp := newIdP(t, testidp.Options{DeviceInterval: time.Second})
	store, _ := newStore(t)
	p := msProvider(idp, publicClient, "", config.FlowAuthCode)
	for _, tc := range []struct {
		user string
		ok   bool
	}{{bob, false}, {alice, true}} {
		l, err := StartDeviceLogin(ctxT(t), p, alice, nil)
		if err != nil {
			t.Fatal(err)
		}
		l.unit = 10 * time.Millisecond
		if l.UserCode == "" || l.VerificationURI == "" || !l.Expiry.After(time.Now()) {
			t.Fatalf("device login %+v", l)
		}
		if err := idp.ApproveDevice(l.UserCode, tc.user); err != nil {
			t.Fatal(err)
		}
		_, err = l.Wait(ctxT(t), store)
		var mismatch *IdentityMismatchError
		switch {
		case tc.ok && err != nil:
			t.Fatalf("Wait: %v", err)
		case !tc.ok && !errors.As(err, &mismatch):
			t.Fatalf("approved by %s: %v", tc.user, err)
		case !tc.ok:
			expectNothingStored(t, store, alice)
		}
	}
	if rec := mustGet(t, store, alice); rec.Flow != config.FlowDevice {
		t.Fatalf("stored %+v", rec)
	}
}

// TestAppToken: the Manager tells whether it holds an app-only token and
// until when, and why it could not get one.
func TestAppToken(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	store, _ := newStore(t)
	good := NewManager(store, providersFor(msProvider(idp, confClient, confSecret, config.FlowClientCredentials)), Options{})
	if st, ok := good.AppToken(alice); !ok || !st.Expiry.IsZero() {
		t.Fatalf("before any token: %+v %v", st, ok)
	}
	if _, err := good.Token(ctxT(t), alice); err != nil {
		t.Fatal(err)
	}
	if st, ok := good.AppToken(alice); !ok || !st.Expiry.After(time.Now()) || st.LastError != "" {
		t.Fatalf("after a token: %+v %v", st, ok)
	}
	bad := NewManager(store, providersFor(msProvider(idp, confClient, "the-secret-id", config.FlowClientCredentials)), Options{})
	if _, err := bad.Token(ctxT(t), alice); err == nil {
		t.Fatal("a wrong secret got a token")
	}
	if st, ok := bad.AppToken(alice); !ok || !strings.Contains(st.LastError, "AADSTS7000215") {
		t.Fatalf("after a failure: %+v %v", st, ok)
	}
	user := NewManager(store, providersFor(msProvider(idp, publicClient, "", config.FlowAuthCode)), Options{})
	if _, ok := user.AppToken(alice); ok {
		t.Fatal("AppToken for a delegated identity")
	}
}
