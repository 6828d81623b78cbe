package web_test

import (
	"fmt"
	"testing"
	"time"
)

// Two tabs on a chat page, each a user, see each other join and leave
// through onJoin and onLeave, and presence() lists them both: the
// broker's join/leave and presence reaching the browser client.
func TestChatTabsSeeEachOtherJoinAndLeave(t *testing.T) {
	t.Parallel()
	n := tokenNodeWith(t, nodeConfig{control: true})
	const room = "chat.lobby"
	open := func(user string) *page {
		p := openPage(t, n.URL)
		tk := jwtToken(t, jwtKey, user, time.Now().Add(time.Hour), "chat.>")
		p.eval(fmt.Sprintf(`(() => {
			window.joins = [];
			start({token: %s});
			const seen = (ev) => (j) => joins.push(ev + ':' + j.user);
			return sub(%s, 'room', {onJoin: seen('join'), onLeave: seen('leave')});
		})()`, js(tk), js(room)), nil)
		return p
	}
	alice := open("alice")
	alice.wait(`joins.includes('join:alice')`, 10*time.Second)
	bob := open("bob")
	alice.wait(`joins.includes('join:bob')`, 10*time.Second)
	bob.wait(`joins.includes('join:bob')`, 10*time.Second)

	var users []string
	bob.eval(`c.presence(`+js(room)+`).then((p) => p.clients.map((c) => c.user).sort())`, &users)
	if fmt.Sprint(users) != "[alice bob]" {
		t.Fatalf("presence() in bob's tab lists %v, want alice and bob", users)
	}
	var stats struct{ Sessions, Users int }
	alice.eval(`c.presenceStats(`+js(room)+`)`, &stats)
	if stats.Sessions != 2 || stats.Users != 2 {
		t.Fatalf("presenceStats() = %+v, want 2 sessions of 2 users", stats)
	}

	bob.eval(`c.close(), true`, nil)
	alice.wait(`joins.includes('leave:bob')`, 10*time.Second)
	var joins []string
	alice.eval(`joins`, &joins)
	if want := []string{"join:alice", "join:bob", "leave:bob"}; fmt.Sprint(joins) != fmt.Sprint(want) {
		t.Errorf("alice saw %v, want %v", joins, want)
	}
}
