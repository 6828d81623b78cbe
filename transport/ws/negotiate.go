package ws

import (
	"bytes"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws/wsflate"
)

// The permessage-deflate negotiation (RFC 7692 section 7.1). The server
// always compresses without context takeover, each message alone with a
// fresh compressor: that is what lets a node compress a message once and
// send the same frame to every compressing subscriber. It compresses
// with compress/flate, whose window is always 32 KiB (15 bits), so it
// declines an offer that limits the server's window below that and takes
// the client's next offer, if any. What the client does is the client's
// choice, within what it offered: with context takeover (no
// client_no_context_takeover in its offer) the session keeps the last
// window of what it inflated for the next message.

// maxWindowBits is the window of compress/flate, the most RFC 7692
// allows.
const maxWindowBits = 15

// minInflateWindowBits is the least window the inflater keeps for a
// client that uses context takeover: zlib, asked for 8 bits, uses 9.
const minInflateWindowBits = 9

// negotiation negotiates permessage-deflate for one upgrade request: its
// offer method is ws.HTTPUpgrader's Negotiate, called once per extension
// the client offers, in the client's order of preference.
type negotiation struct {
	accepted bool
	// params are the accepted offer's parameters, as the client sent
	// them.
	params wsflate.Parameters
}

// offer answers one extension offer: the response's extension when it
// accepts it, else a zero option (declined). It accepts the first
// permessage-deflate offer it can honour. An offer with a parameter that
// is unknown, repeated or has an invalid value is declined, as RFC 7692
// section 5 says, and so is one with server_max_window_bits below 15;
// neither fails the handshake. The error is always nil.
func (n *negotiation) offer(opt httphead.Option) (httphead.Option, error) {
	if n.accepted || !bytes.Equal(opt.Name, wsflate.ExtensionNameBytes) {
		return httphead.Option{}, nil
	}
	var p wsflate.Parameters
	if err := p.Parse(opt); err != nil {
		return httphead.Option{}, nil
	}
	if p.ServerMaxWindowBits.Defined() && p.ServerMaxWindowBits < maxWindowBits {
		return httphead.Option{}, nil
	}
	n.accepted, n.params = true, p
	return wsflate.Parameters{
		ServerNoContextTakeover: true,
		// Echoed: the client said it will not use context takeover.
		ClientNoContextTakeover: p.ClientNoContextTakeover,
		// RFC 7692 7.1.2.1: an accepted server_max_window_bits is
		// answered with a value no larger (15, the one accepted).
		ServerMaxWindowBits: p.ServerMaxWindowBits,
		// client_max_window_bits is not answered: the client's window
		// is then whatever it offered (15 when it gave no value).
	}.Option(), nil
}

// inflater returns the inflate state of a session whose upgrade accepted
// permessage-deflate, or nil when it did not.
func (n *negotiation) inflater() *inflater {
	if !n.accepted {
		return nil
	}
	f := &inflater{}
	if !n.params.ClientNoContextTakeover {
		bits := maxWindowBits
		// 1 stands for client_max_window_bits without a value.
		if b := int(n.params.ClientMaxWindowBits); b > 1 {
			bits = max(b, minInflateWindowBits)
		}
		f.window = 1 << bits
	}
	return f
}
