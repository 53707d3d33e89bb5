package diagnose

// sendingLimitRules are the rules of replies by which an upstream says that
// an account sends too much, too fast: waiting helps, sending on does not.
var sendingLimitRules = map[string]bool{
	"smtp-submission-limit": true,
	"smtp-message-rate":     true,
	"smtp-congestion":       true,
}

// IsSendingLimit reports whether err holds an upstream SMTP reply saying
// that the account exceeded a sending limit (Exchange Online's 554 5.2.0
// SubmissionQuotaExceeded, a 4xx "message submission rate ... exceeded", or
// an X.4.5 congestion reply such as Gmail's daily limit).
func IsSendingLimit(err error) bool {
	r := ReplyOf(err)
	if r == nil || r.Protocol != SMTP {
		return false
	}
	for i := range rules {
		if rules[i].matches(r) {
			return sendingLimitRules[rules[i].id]
		}
	}
	return false
}
