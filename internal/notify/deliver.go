package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Bounds of one delivery.
const (
	// maxCommandOutput is how much of the command's output is kept for the
	// log when it fails.
	maxCommandOutput = 2 << 10
	// commandWaitDelay bounds the wait for the command's output after it
	// exited or was killed (a child it started may hold the pipes open).
	commandWaitDelay = 2 * time.Second
	// maxResponseBody is how much of the webhook's answer is read.
	maxResponseBody = 4 << 10
)

// passedEnv are the variables the command inherits from xoauthd; nothing
// else is passed, so secrets given to xoauthd in its environment (a client
// secret read with ${env:NAME}) stay behind. On Windows names are matched
// case-insensitively.
var passedEnv = []string{
	"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
	"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
	"SystemRoot", "WINDIR", "TEMP", "TMP", "USERPROFILE", "ComSpec", "PATHEXT",
}

// commandEnv is the environment of the command for a.
func commandEnv(a Alert) []string {
	var env []string
	seen := map[string]bool{}
	for _, name := range passedEnv {
		if v, ok := os.LookupEnv(name); ok && !seen[name] {
			seen[name] = true
			env = append(env, name+"="+v)
		}
	}
	for _, kv := range [][2]string{
		{"XOAUTHD_IDENTITY", a.Identity}, {"XOAUTHD_KIND", a.Kind}, {"XOAUTHD_CAUSE", a.Cause},
		{"XOAUTHD_CODE", a.Code}, {"XOAUTHD_FIX", a.Fix}, {"XOAUTHD_COMMAND", a.Command},
		{"XOAUTHD_TIME", a.Time.UTC().Format(time.RFC3339)}, {"XOAUTHD_HOST", a.Host},
	} {
		env = append(env, kv[0]+"="+strings.ReplaceAll(kv[1], "\x00", ""))
	}
	return env
}

// runCommand runs the command of h with payload on stdin, bounded by
// h.Timeout.
func (n *Notifier) runCommand(h Hooks, a Alert, payload []byte) error {
	ctx, cancel := context.WithTimeout(n.ctx, h.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.Command[0], h.Command[1:]...)
	cmd.Stdin = bytes.NewReader(payload)
	cmd.Env = commandEnv(a)
	out := &cappedBuffer{max: maxCommandOutput}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = commandWaitDelay
	err := cmd.Run()
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil && n.ctx.Err() == nil:
		err = fmt.Errorf("killed after the timeout of %s (hint: raise notify.timeout or make the command quicker)", h.Timeout)
	case ctx.Err() != nil:
		err = errors.New("killed: xoauthd is stopping")
	}
	if text := out.text(); text != "" {
		return fmt.Errorf("running %s: %w; its output: %s", h.Command[0], err, text)
	}
	return fmt.Errorf("running %s: %w", h.Command[0], err)
}

// cappedBuffer keeps the first max bytes written to it and swallows the
// rest. The command's stdout and stderr share one.
type cappedBuffer struct {
	mu        sync.Mutex
	max       int
	buf       bytes.Buffer
	truncated bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room < len(p) {
		b.buf.Write(p[:max(room, 0)])
		b.truncated = true
	} else {
		b.buf.Write(p)
	}
	return len(p), nil
}

// text is the output on one line, marked when cut.
func (b *cappedBuffer) text() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.Join(strings.Fields(strings.ToValidUTF8(b.buf.String(), "?")), " ")
	if b.truncated {
		s += " ..."
	}
	return s
}

// postWebhook posts payload to the webhook of h, retrying network errors,
// timeouts, 408, 429 and 5xx with a doubling pause.
func (n *Notifier) postWebhook(h Hooks, payload []byte) error {
	u, err := webhookURL(h.Webhook)
	if err != nil {
		return err
	}
	retries := max(n.opts.Retries, 0)
	wait := n.opts.RetryWait
	for attempt := 1; ; attempt++ {
		err = n.postOnce(h.Timeout, u, payload)
		var perm *permanentError
		if err == nil || errors.As(err, &perm) || attempt > retries {
			if err != nil && attempt > 1 {
				err = fmt.Errorf("%w (after %d attempts)", err, attempt)
			}
			return err
		}
		n.log.Debug("webhook failed; retrying", "host", u.Host, "attempt", attempt, "err", err)
		select {
		case <-n.ctx.Done():
			return fmt.Errorf("%w (xoauthd is stopping)", err)
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// permanentError is a webhook answer that another attempt will not change.
type permanentError struct{ msg string }

func (e *permanentError) Error() string { return e.msg }

// postOnce makes one webhook request. Errors name the host, never the URL.
func (n *Notifier) postOnce(timeout time.Duration, u *url.URL, payload []byte) error {
	ctx, cancel := context.WithTimeout(n.ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(payload))
	if err != nil {
		return &permanentError{"building the webhook request failed (check notify.webhook)"}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "xoauthd-notify")
	resp, err := n.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text holds the URL
		}
		if ctx.Err() != nil && n.ctx.Err() == nil {
			return fmt.Errorf("posting to the webhook at %s: no answer within %s", u.Host, timeout)
		}
		return fmt.Errorf("posting to the webhook at %s: %w", u.Host, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
	resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusRequestTimeout || code == http.StatusTooEarly || code == http.StatusTooManyRequests || code >= 500:
		return fmt.Errorf("the webhook at %s answered %s", u.Host, resp.Status)
	case code >= 300 && code < 400:
		return &permanentError{fmt.Sprintf("the webhook at %s answered %s; redirects are not followed: set notify.webhook to the final URL", u.Host, resp.Status)}
	default:
		return &permanentError{fmt.Sprintf("the webhook at %s answered %s; check notify.webhook", u.Host, resp.Status)}
	}
}

// webhookURL parses raw, which must be https, or http to a loopback host
// (configuration validation says so too). Errors never repeat raw.
func webhookURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, errors.New("notify.webhook is not an absolute https URL")
	}
	if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("the webhook at %s must use https (http only to localhost)", u.Host)
	}
	return u, nil
}

func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
