package cms

import (
	"context"
	"errors"

	"github.com/ikabud/panel/internal/procmgr"
)

// installDokuWiki is not there yet.
func (i *Installer) installDokuWiki(ctx context.Context, spec procmgr.Spec, site Site, u procmgr.InstanceUser) (string, error) {
	return "", errors.New("dokuwiki is not installable yet")
}
