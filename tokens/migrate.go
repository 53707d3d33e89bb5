package tokens

import "fmt"

// MigrateResult counts what Migrate did.
type MigrateResult struct {
	Copied []string // identities whose token sets were written to the destination
	Kept   []string // identities the destination already had in a newer state
}

// Migrate copies every identity's token set from one backend to another,
// so no identity needs a new sign-in after switching store.backend. A
// token set the destination already holds in a newer state (a later login
// or refresh) is kept. The source is not changed: it stays as a backup.
func Migrate(from, to Backend) (MigrateResult, error) {
	var res MigrateResult
	recs, err := from.all()
	if err != nil {
		return res, fmt.Errorf("reading %s: %w", from.Describe(), err)
	}
	for _, rec := range recs {
		copied := false
		err := to.modify(rec.Identity, func(r *record, exists bool) (bool, error) {
			if exists && lastUse(*r).After(lastUse(rec)) {
				return false, nil
			}
			*r, copied = rec.clone(), true
			return true, nil
		})
		if err != nil {
			return res, fmt.Errorf("writing %s to %s: %w", rec.Identity, to.Describe(), err)
		}
		if copied {
			res.Copied = append(res.Copied, rec.Identity)
		} else {
			res.Kept = append(res.Kept, rec.Identity)
		}
	}
	return res, nil
}
