package proxy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestFrontDependencies keeps the protocol fronts and proxy free of the
// configuration, the token machinery and their libraries: token errors
// reach the login failure policy as proxy's sentinels, and explanations
// are injected (Gateway.Explain).
func TestFrontDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH")
	}
	forbidden := []string{
		"github.com/xoauthd/xoauthd/config",
		"github.com/xoauthd/xoauthd/tokens",
		"gopkg.in/yaml.v3",
		"github.com/fsnotify/fsnotify",
		"golang.org/x/oauth2",
	}
	tests := []struct {
		pkg       string
		forbidden []string
	}{
		{"github.com/xoauthd/xoauthd/imapfront", forbidden},
		{"github.com/xoauthd/xoauthd/pop3front", forbidden},
		{"github.com/xoauthd/xoauthd/smtpfront", forbidden},
		{"github.com/xoauthd/xoauthd/proxy", append(forbidden, "github.com/xoauthd/xoauthd/internal/diagnose")},
	}
	for _, tt := range tests {
		out, err := exec.Command(goBin, "list", "-deps", tt.pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", tt.pkg, err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 2 {
			t.Fatalf("go list -deps %s listed %q", tt.pkg, deps)
		}
		for _, d := range deps {
			for _, f := range tt.forbidden {
				if d == f || strings.HasPrefix(d, f+"/") {
					t.Errorf("%s depends on %s", tt.pkg, d)
				}
			}
		}
	}
}
