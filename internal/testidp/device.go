package testidp

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// verificationURI is what Microsoft's devicecode endpoint tells people to
// open; it is only a string here, nothing serves it.
const verificationURI = "https://microsoft.com/devicelogin"

// deviceState is the life cycle of a device authorization.
type deviceState int

const (
	devicePending  deviceState = iota
	deviceApproved             // by ApproveDevice; the next poll gets tokens
	deviceDeclined             // by DeclineDevice; the next poll is told so
	deviceFinished             // tokens issued or decline reported
)

// deviceGrant is one device authorization (RFC 8628 §3.2).
type deviceGrant struct {
	userCode string
	clientID string
	scopes   scopeSet
	expires  time.Time
	lastPoll time.Time // zero before the first poll
	pending  int       // authorization_pending answers given
	state    deviceState
	user     string // set on approval
}

// deviceAuthBody is the devicecode response.
type deviceAuthBody struct {
	UserCode        string `json:"user_code"`
	DeviceCode      string `json:"device_code"`
	VerificationURI string `json:"verification_uri"`
	ExpiresIn       int64  `json:"expires_in"`
	Interval        int64  `json:"interval"`
	Message         string `json:"message"`
}

// handleDeviceCode serves POST /{tenant}/oauth2/v2.0/devicecode (RFC 8628
// §3.1). Any known client may ask; whether it may redeem is decided by the
// client authentication of the token endpoint, as at Microsoft, so a
// confidential client without its secret fails there with AADSTS7000218.
func (p *IdP) handleDeviceCode(w http.ResponseWriter, r *http.Request) {
	form := p.readForm(w, r)
	if form == nil {
		return
	}
	p.count(deviceCodeCounter)
	if p.injectFailure(w, r) {
		return
	}
	tenant := r.PathValue("tenant")
	if _, ok := p.tenantKind(tenant); !ok {
		p.writeError(w, r, errTenantNotFound(tenant))
		return
	}
	clientID := form.Get("client_id")
	if clientID == "" {
		p.writeError(w, r, errMissingParam("client_id"))
		return
	}
	if _, ok := p.client(clientID); !ok {
		p.writeError(w, r, errUnknownClient(clientID, p.opts.Tenant))
		return
	}
	scope := form.Get("scope")
	if strings.TrimSpace(scope) == "" {
		p.writeError(w, r, errMissingParam("scope"))
		return
	}
	deviceCode, userCode := p.newDevice(clientID, parseScopes(scope))
	p.log.Debug("device code issued", "client_id", clientID, "user_code", userCode)
	interval := int64((p.opts.DeviceInterval + time.Second - 1) / time.Second)
	if interval < 1 {
		interval = 1
	}
	writeJSON(w, http.StatusOK, deviceAuthBody{
		UserCode:        userCode,
		DeviceCode:      deviceCode,
		VerificationURI: verificationURI,
		ExpiresIn:       lifetimeSeconds(p.opts.DeviceCodeLifetime),
		Interval:        interval,
		Message:         "To sign in, use a web browser to open the page " + verificationURI + " and enter the code " + userCode + " to authenticate.",
	})
}

func (p *IdP) newDevice(clientID string, scopes scopeSet) (deviceCode, userCode string) {
	deviceCode = opaqueToken("DAQABIQEAAAD")
	p.mu.Lock()
	defer p.mu.Unlock()
	userCode = randomUserCode()
	for p.userCodes[userCode] != nil {
		userCode = randomUserCode()
	}
	d := &deviceGrant{
		userCode: userCode,
		clientID: clientID,
		scopes:   scopes,
		expires:  p.now().Add(p.opts.DeviceCodeLifetime),
	}
	p.devices[deviceCode] = d
	p.userCodes[userCode] = d
	return deviceCode, userCode
}

// redeemDevice is the device code grant (RFC 8628 §3.4, §3.5).
func (p *IdP) redeemDevice(c Client, form url.Values) (*tokenBody, *aadError) {
	dc := form.Get("device_code")
	if dc == "" {
		return nil, errMissingParam("device_code")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.devices[dc]
	if d == nil || d.clientID != c.ID {
		return nil, errBadDeviceCode()
	}
	now := p.now()
	if !now.Before(d.expires) {
		return nil, errDeviceExpired()
	}
	switch d.state {
	case deviceFinished:
		return nil, errDeviceUsed()
	case deviceDeclined:
		d.state = deviceFinished
		return nil, errDeclined()
	case devicePending:
		if e := p.pollPendingLocked(d, now); e != nil {
			return nil, e
		}
	}
	d.state = deviceFinished
	g := tokenGrant{clientID: c.ID, user: d.user, scopes: d.scopes}
	return p.issueLocked(g, now, d.scopes.offline), nil
}

// pollPendingLocked handles a poll of a pending authorization: slow_down
// when polled too fast, automatic approval when configured, else
// authorization_pending. A nil result means the grant was just approved.
func (p *IdP) pollPendingLocked(d *deviceGrant, now time.Time) *aadError {
	last := d.lastPoll
	d.lastPoll = now
	if iv := p.opts.DeviceInterval; iv > 0 && !last.IsZero() && now.Sub(last) < iv*3/4 {
		return errSlowDown()
	}
	if p.autoUser != "" && d.pending >= p.autoAfter {
		d.user = p.autoUser
		d.state = deviceApproved
		return nil
	}
	d.pending++
	return errPending()
}

// ApproveDevice simulates the person entering userCode (case and dashes do
// not matter) and signing in as user, who must be in the directory.
func (p *IdP) ApproveDevice(userCode, user string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	d, err := p.deviceForCodeLocked(userCode)
	if err != nil {
		return err
	}
	if !p.knownUserLocked(user) {
		return fmt.Errorf("approving device code %s: AADSTS50034: user %q is not in the directory (hint: call AddUser first)", d.userCode, user)
	}
	d.user = strings.ToLower(user)
	d.state = deviceApproved
	return nil
}

// DeclineDevice simulates the person refusing the sign-in for userCode.
func (p *IdP) DeclineDevice(userCode string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	d, err := p.deviceForCodeLocked(userCode)
	if err != nil {
		return err
	}
	d.state = deviceDeclined
	return nil
}

func (p *IdP) deviceForCodeLocked(userCode string) (*deviceGrant, error) {
	code := strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(userCode))
	d := p.userCodes[code]
	switch {
	case d == nil:
		return nil, fmt.Errorf("unknown device user code %q (hint: use the user_code of the devicecode response)", userCode)
	case !p.now().Before(d.expires):
		return nil, fmt.Errorf("device user code %s: AADSTS70019: verification code expired", code)
	case d.state != devicePending:
		return nil, fmt.Errorf("device user code %s was already approved or declined (hint: start a new device flow)", code)
	}
	return d, nil
}

// SetDeviceAutoApprove approves every pending device authorization for
// user once it has been answered authorization_pending afterPolls times
// (0: the first poll gets tokens). The user is added when missing. ""
// disables automatic approval.
func (p *IdP) SetDeviceAutoApprove(user string, afterPolls int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.autoUser = strings.ToLower(user)
	p.autoAfter = max(afterPolls, 0)
	if user != "" {
		p.userLocked(user)
	}
}
