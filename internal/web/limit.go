package web

import (
	"net"
	"sync"
)

// limitListener accepts at most n connections at once; Accept waits for a
// slot. (x/net's netutil.LimitListener hides the underlying connection,
// which the Unix socket's peer check needs.)
type limitListener struct {
	net.Listener
	slots chan struct{}
}

func newLimitListener(ln net.Listener, n int) net.Listener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, n)}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.slots <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.slots }}, nil
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// NetConn returns the connection under the limit's wrapper.
func (c *limitedConn) NetConn() net.Conn { return c.Conn }
