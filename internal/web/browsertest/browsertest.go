// Package browsertest starts Debian's chromium, headless, for the panel's
// browser tests and for cmd/panel-shots: one place that knows where the
// browser is and which flags make it quiet and reproducible.
package browsertest

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/chromedp/chromedp"
)

// ExecPath is where Debian's chromium package installs the browser.
const ExecPath = "/usr/bin/chromium"

// ErrMissing: no browser at ExecPath. Tests fail with it rather than skip:
// a browser test that does not run has not passed.
var ErrMissing = errors.New("chromium missing: install Debian's chromium (scripts/deps.sh does)")

// Options are the allocator options: headless, no sandbox (the panel's
// tests run as root, and chromium refuses to sandbox root), no GPU, and
// nothing that talks to the network on its own (updates, sync, safe
// browsing), with a fresh profile in userDataDir.
func Options(userDataDir string) []chromedp.ExecAllocatorOption {
	return []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(ExecPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(userDataDir),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// Background tabs (the second browser of a test) keep their
		// timers and sockets running at full speed.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("safebrowsing-disable-auto-update", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("force-color-profile", "srgb"),
	}
}

// Start launches the browser with a fresh profile in userDataDir (which
// the caller removes afterwards) and returns the context of its first tab.
// The browser lives until cancel, which also waits for the process to end;
// ctx should have no deadline of its own (bound single actions with a
// child context instead), as the first action binds the browser's life to
// the context it runs in.
func Start(ctx context.Context, userDataDir string, extra ...chromedp.ExecAllocatorOption) (context.Context, context.CancelFunc, error) {
	if _, err := os.Stat(ExecPath); err != nil {
		return nil, nil, fmt.Errorf("%w (%v)", ErrMissing, err)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, append(Options(userDataDir), extra...)...)
	tabCtx, cancelTab := chromedp.NewContext(allocCtx)
	cancel := func() {
		cancelTab()
		cancelAlloc()
	}
	// An action with no steps starts the browser and opens the tab, so a
	// browser that cannot start fails here and not in the first step.
	if err := chromedp.Do(tabCtx); err != nil {
		cancel()
		return nil, nil, fmt.Errorf("browsertest: start %s: %w", ExecPath, err)
	}
	return tabCtx, cancel, nil
}

// NewProfile opens a tab in a new browser context of the browser of ctx
// (a context from Start): its own cookies and storage, as a second person
// at another computer. cancel closes the tab and disposes the context.
func NewProfile(ctx context.Context) (context.Context, context.CancelFunc, error) {
	tabCtx, cancel := chromedp.NewContext(ctx, chromedp.WithNewBrowserContext())
	if err := chromedp.Do(tabCtx); err != nil {
		cancel()
		return nil, nil, fmt.Errorf("browsertest: new browser context: %w", err)
	}
	return tabCtx, cancel, nil
}
