package proxy

import (
	"errors"
	"fmt"
	"testing"
)

func TestStageError(t *testing.T) {
	if AtStage(StageLogin, nil) != nil {
		t.Error("AtStage(nil) is not nil")
	}
	base := fmt.Errorf("upstream login: %w", ErrUpstreamRejected)
	err := fmt.Errorf("outer: %w", AtStage(StageLogin, base))
	if StageOf(err) != StageLogin || !errors.Is(err, ErrUpstreamRejected) || err.Error() != "outer: upstream login: upstream rejected the token" {
		t.Errorf("stage %q, is rejected %v, text %q", StageOf(err), errors.Is(err, ErrUpstreamRejected), err)
	}
	if got := StageOf(AtStage(StageMailbox, err)); got != StageLogin {
		t.Errorf("re-wrapping changed the stage to %q", got)
	}
	if StageOf(base) != "" {
		t.Error("a stage without StageError")
	}
}
