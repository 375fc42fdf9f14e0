package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MembersPath is the CRM's team member list.
const MembersPath = "/api/public/team-members/all"

// Limits of one TeamMembers call.
const (
	// maxMemberPages bounds the pages followed: a paging bug in the API
	// must not loop forever.
	maxMemberPages = 1000
	// maxMembersBody bounds one page of the answer.
	maxMembersBody = 64 << 20
	// memberAttempts is how many times one page is asked for when the
	// answer is 429, 5xx or a connection error.
	memberAttempts = 3
	// maxMemberWait caps a Retry-After between those attempts.
	maxMemberWait = 10 * time.Second
)

// Member is a CRM team member.
type Member struct {
	ID    string
	Email string
	Name  string
	// Active is the member's active flag (active, isActive or status ==
	// "active"); true when the API gives none.
	Active bool
}

// TeamMembers lists the CRM's team members: GET {base}/api/public/team-members/all
// with the API key. The answer may be a JSON array of members, or an object
// with the array in data, items, members or results and paging given as
// page/totalPages or as a next URL or cursor; every page is read. A 401 or
// 403 is ErrUnauthorized; 429, 5xx and connection errors are tried again a
// few times, after the wait the API asks for.
func (c *Client) TeamMembers(ctx context.Context) ([]Member, error) {
	next := c.base.String() + MembersPath
	var out []Member
	seen := map[string]bool{}
	for page := 1; ; page++ {
		if page > maxMemberPages {
			return nil, fmt.Errorf("list team members: more than %d pages: the API's paging does not end", maxMemberPages)
		}
		seen[next] = true
		body, err := c.membersPage(ctx, next)
		if err != nil {
			return nil, err
		}
		p, err := parseMembersPage(body)
		if err != nil {
			return nil, fmt.Errorf("list team members: page %d: %w", page, err)
		}
		out = append(out, p.members...)
		if len(p.members) == 0 {
			return out, nil // an empty page ends the list, whatever the paging says
		}
		u, err := c.nextPage(next, p)
		if err != nil {
			return nil, fmt.Errorf("list team members: page %d: %w", page, err)
		}
		if u == "" || seen[u] {
			return out, nil
		}
		next = u
	}
}

// membersPage GETs one page, trying again on a transient answer.
func (c *Client) membersPage(ctx context.Context, u string) ([]byte, error) {
	for attempt := 1; ; attempt++ {
		body, out := c.get(ctx, u)
		if out.Kind == OK {
			return body, nil
		}
		retry := out.Kind == RateLimited || out.Kind == Transient && out.Reason != "cancelled"
		if !retry || attempt == memberAttempts {
			return nil, fmt.Errorf("list team members: %w", out.Err)
		}
		wait := min(max(out.RetryAfter, time.Duration(attempt)*time.Second), maxMemberWait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("list team members: %w", context.Cause(ctx))
		case <-t.C:
		}
	}
}

// get makes one GET with the API key and classifies the answer.
func (c *Client) get(ctx context.Context, u string) ([]byte, Outcome) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, Outcome{Kind: Permanent, Reason: "bad_request", Err: fmt.Errorf("build request: %w", err)}
	}
	req.Header.Set(c.opts.KeyHeader, c.opts.APIKey)
	req.Header.Set("Accept", "application/json")
	resp, err := c.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, classifyError(ctx, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMembersBody+1))
	if err != nil {
		return nil, classifyError(ctx, err)
	}
	if len(body) > maxMembersBody && resp.StatusCode/100 == 2 {
		return nil, Outcome{Kind: Permanent, HTTPStatus: resp.StatusCode, Reason: "too_large",
			Err: fmt.Errorf("HTTP %d: a page larger than %d MiB", resp.StatusCode, maxMembersBody>>20)}
	}
	if c.opts.APIKey != "" {
		body = bytes.ReplaceAll(body, []byte(c.opts.APIKey), []byte("[api key]"))
	}
	out := Classify(resp.StatusCode, resp.Header, body, c.opts.Now())
	if out.Kind == Transient && out.Reason == "success_false" {
		// A list answered 2xx with success=false is a refusal, not a hiccup.
		out.Kind = Permanent
	}
	return body, out
}

// membersPageData is one decoded page of the team member list.
type membersPageData struct {
	members    []Member
	page       int    // the page number the answer gives, 0 if none
	totalPages int    // 0 if none
	next       string // a next URL or cursor, "" if none
}

// rawMember is a member as the API may write it.
type rawMember struct {
	ID        json.RawMessage `json:"id"`
	Email     string          `json:"email"`
	Name      string          `json:"name"`
	FirstName string          `json:"first_name"`
	LastName  string          `json:"last_name"`
	FirstCC   string          `json:"firstName"`
	LastCC    string          `json:"lastName"`
	Active    json.RawMessage `json:"active"`
	IsActive  json.RawMessage `json:"isActive"`
	IsActive2 json.RawMessage `json:"is_active"`
	Status    json.RawMessage `json:"status"`
}

// listKeys are where an object answer may hold the member array.
var listKeys = []string{"data", "items", "members", "results", "teamMembers"}

// parseMembersPage reads one page: an array, or an object holding the
// array and its paging.
func parseMembersPage(body []byte) (membersPageData, error) {
	var p membersPageData
	body = bytes.TrimSpace(body)
	switch {
	case len(body) > 0 && body[0] == '[':
		ms, err := parseMembers(body)
		p.members = ms
		return p, err
	case len(body) == 0 || body[0] != '{':
		return p, fmt.Errorf("the answer is not JSON: %s", apiMessage(body))
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return p, fmt.Errorf("the answer is not valid JSON: %v", err)
	}
	var list json.RawMessage
	for _, k := range listKeys {
		v := bytes.TrimSpace(obj[k])
		if len(v) > 0 && v[0] == '[' {
			list = v
			break
		}
		if len(v) > 0 && v[0] == '{' && k == "data" { // {"data": {"items": [...], "page": ...}}
			var inner map[string]json.RawMessage
			if json.Unmarshal(v, &inner) == nil {
				for _, k2 := range listKeys {
					if v2 := bytes.TrimSpace(inner[k2]); len(v2) > 0 && v2[0] == '[' {
						list = v2
						for pk, pv := range inner {
							if _, ok := obj[pk]; !ok {
								obj[pk] = pv
							}
						}
						break
					}
				}
			}
			if list != nil {
				break
			}
		}
	}
	if list == nil {
		return p, fmt.Errorf("the answer is an object without a data, items or members array: %s", apiMessage(body))
	}
	ms, err := parseMembers(list)
	if err != nil {
		return p, err
	}
	p.members = ms
	paging := []map[string]json.RawMessage{obj}
	for _, k := range []string{"meta", "pagination", "paging", "pageInfo"} {
		var m map[string]json.RawMessage
		if json.Unmarshal(obj[k], &m) == nil && m != nil {
			paging = append(paging, m)
		}
	}
	for _, m := range paging {
		p.page = firstInt(p.page, m, "page", "currentPage", "current_page")
		p.totalPages = firstInt(p.totalPages, m, "totalPages", "total_pages", "pages", "lastPage", "last_page")
		if p.next == "" {
			p.next = firstString(m, "next", "nextCursor", "next_cursor", "nextPage", "next_page", "nextPageUrl", "next_page_url")
		}
	}
	return p, nil
}

func parseMembers(b []byte) ([]Member, error) {
	var raws []rawMember
	if err := json.Unmarshal(b, &raws); err != nil {
		return nil, fmt.Errorf("the member list is not an array of objects: %v", err)
	}
	out := make([]Member, 0, len(raws))
	for _, r := range raws {
		m := Member{ID: jsonText(r.ID), Email: strings.TrimSpace(r.Email), Name: strings.TrimSpace(r.Name), Active: true}
		if m.Name == "" {
			m.Name = strings.TrimSpace(r.FirstName + " " + r.LastName)
		}
		if m.Name == "" {
			m.Name = strings.TrimSpace(r.FirstCC + " " + r.LastCC)
		}
		if a, ok := flagValue(r.Active); ok {
			m.Active = a
		} else if a, ok := flagValue(r.IsActive); ok {
			m.Active = a
		} else if a, ok := flagValue(r.IsActive2); ok {
			m.Active = a
		} else if s := strings.ToLower(jsonText(r.Status)); s != "" {
			m.Active = s == "active"
		}
		if m.ID == "" {
			continue // not a member we could assign
		}
		out = append(out, m)
	}
	return out, nil
}

// flagValue reads an active flag: a JSON boolean, or "true"/"false", 1/0.
func flagValue(v json.RawMessage) (value, ok bool) {
	switch strings.ToLower(jsonText(v)) {
	case "true", "1", "yes":
		return true, true
	case "false", "0", "no":
		return false, true
	}
	return false, false
}

// jsonText is a JSON string's text or a number's literal; "" otherwise.
func jsonText(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || string(v) == "null" {
		return ""
	}
	if v[0] == '"' {
		var s string
		if json.Unmarshal(v, &s) != nil {
			return ""
		}
		return strings.TrimSpace(s)
	}
	if v[0] == '{' || v[0] == '[' {
		return ""
	}
	return string(v)
}

func firstInt(cur int, m map[string]json.RawMessage, keys ...string) int {
	if cur != 0 {
		return cur
	}
	for _, k := range keys {
		if n, err := strconv.Atoi(jsonText(m[k])); err == nil && n > 0 {
			return n
		}
	}
	return 0
}

func firstString(m map[string]json.RawMessage, keys ...string) string {
	for _, k := range keys {
		v := bytes.TrimSpace(m[k])
		if len(v) > 0 && v[0] == '"' {
			if s := jsonText(v); s != "" {
				return s
			}
		}
	}
	return ""
}

// errForeignNext refuses to send the API key to another host.
var errForeignNext = errors.New("the next page is on another host: not following it with the API key")

// nextPage returns the URL of the page after cur, or "" at the end.
func (c *Client) nextPage(cur string, p membersPageData) (string, error) {
	cu, err := url.Parse(cur)
	if err != nil {
		return "", err
	}
	switch {
	case p.next != "":
		if strings.HasPrefix(p.next, "/") || strings.HasPrefix(p.next, "http://") || strings.HasPrefix(p.next, "https://") ||
			strings.HasPrefix(p.next, "?") {
			nu, err := cu.Parse(p.next)
			if err != nil {
				return "", fmt.Errorf("next page %q: %w", p.next, err)
			}
			if nu.Scheme != c.base.Scheme || nu.Host != c.base.Host {
				return "", errForeignNext
			}
			return nu.String(), nil
		}
		q := cu.Query() // a cursor
		q.Set("cursor", p.next)
		cu.RawQuery = q.Encode()
		return cu.String(), nil
	case p.totalPages > 0:
		page := p.page
		if page == 0 {
			page, _ = strconv.Atoi(cu.Query().Get("page"))
			page = max(page, 1)
		}
		if page >= p.totalPages {
			return "", nil
		}
		q := cu.Query()
		q.Set("page", strconv.Itoa(page+1))
		cu.RawQuery = q.Encode()
		return cu.String(), nil
	}
	return "", nil
}
