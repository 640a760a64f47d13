package gateway

import (
	"encoding/json"
	"errors"
	"sort"
	"sync"

	"coprocess/go/pb"
)

// Session is the gateway's own session state: the fields of the real gateway's
// user.SessionState that a plugin's SessionState maps to. A plugin session becomes one
// through fromProto (the gateway's TykSessionState) and is shown to later hooks through
// toProto (its ProtoSessionState), so hooks see what that round trip leaves, exactly:
// max_query_depth and certificate are dropped, basic_auth_data, jwt_data and monitor are
// always present, and metadata values that are not strings arrive JSON-encoded.
type Session struct {
	LastCheck               int64
	Allowance               float64
	Rate                    float64
	Per                     float64
	MaxQueryDepth           int64
	Expires                 int64
	QuotaMax                int64
	QuotaRenews             int64
	QuotaRemaining          int64
	QuotaRenewalRate        int64
	AccessRights            map[string]AccessDefinition
	OrgID                   string
	OauthClientID           string
	OauthKeys               map[string]string
	Certificate             string
	BasicAuthPassword       string
	BasicAuthHash           string
	JWTSecret               string
	TriggerLimits           []float64
	HMACEnabled             bool
	HmacSecret              string
	IsInactive              bool
	ApplyPolicyID           string
	ApplyPolicies           []string
	DataExpires             int64
	MetaData                map[string]interface{}
	EnableDetailedRecording bool
	Tags                    []string
	Alias                   string
	LastUpdated             string
	IdExtractorDeadline     int64
	SessionLifetime         int64
	PostExpiryAction        string
	PostExpiryGracePeriod   int64
	KeyID                   string
}

// AccessDefinition is one entry of Session.AccessRights.
type AccessDefinition struct {
	APIName     string
	APIID       string
	Versions    []string
	AllowedURLs []AccessSpec
}

// AccessSpec is one allowed URL of an AccessDefinition.
type AccessSpec struct {
	URL     string
	Methods []string
}

// fromProto is the gateway's TykSessionState, including its allowed_urls quirk: the list is
// made with the input's length and then appended to, so it comes out with that many empty
// entries in front of the real ones.
func fromProto(p *pb.SessionState) *Session {
	s := &Session{
		LastCheck: p.LastCheck, Allowance: p.Allowance, Rate: p.Rate, Per: p.Per,
		MaxQueryDepth: p.MaxQueryDepth, Expires: p.Expires, QuotaMax: p.QuotaMax,
		QuotaRenews: p.QuotaRenews, QuotaRemaining: p.QuotaRemaining, QuotaRenewalRate: p.QuotaRenewalRate,
		AccessRights: make(map[string]AccessDefinition, len(p.AccessRights)),
		OrgID:        p.OrgId, OauthClientID: p.OauthClientId, OauthKeys: p.OauthKeys, Certificate: p.Certificate,
		HMACEnabled: p.HmacEnabled, HmacSecret: p.HmacSecret, IsInactive: p.IsInactive,
		ApplyPolicyID: p.ApplyPolicyId, ApplyPolicies: p.ApplyPolicies, DataExpires: p.DataExpires,
		MetaData:                map[string]interface{}{},
		EnableDetailedRecording: p.EnableDetailedRecording, Tags: p.Tags, Alias: p.Alias,
		LastUpdated: p.LastUpdated, IdExtractorDeadline: p.IdExtractorDeadline,
		SessionLifetime: p.SessionLifetime, PostExpiryAction: p.PostExpiryAction,
		PostExpiryGracePeriod: p.PostExpiryGracePeriod, KeyID: p.KeyId,
	}
	for key, ad := range p.AccessRights {
		urls := make([]AccessSpec, len(ad.GetAllowedUrls()))
		for _, u := range ad.GetAllowedUrls() {
			urls = append(urls, AccessSpec{URL: u.Url, Methods: u.Methods})
		}
		s.AccessRights[key] = AccessDefinition{APIName: ad.GetApiName(), APIID: ad.GetApiId(), Versions: ad.GetVersions(), AllowedURLs: urls}
	}
	if b := p.BasicAuthData; b != nil {
		s.BasicAuthPassword, s.BasicAuthHash = b.Password, b.Hash
	}
	if j := p.JwtData; j != nil {
		s.JWTSecret = j.Secret
	}
	if m := p.Monitor; m != nil {
		s.TriggerLimits = m.TriggerLimits
	}
	for k, v := range p.Metadata {
		s.MetaData[k] = v
	}
	return s
}

// toProto is the gateway's ProtoSessionState. The result shares nothing with s (DispatchInto
// merges a plugin's edits into it).
func toProto(s *Session) *pb.SessionState {
	s = s.clone()
	p := &pb.SessionState{
		LastCheck: s.LastCheck, Allowance: s.Allowance, Rate: s.Rate, Per: s.Per, Expires: s.Expires,
		QuotaMax: s.QuotaMax, QuotaRenews: s.QuotaRenews, QuotaRemaining: s.QuotaRemaining,
		QuotaRenewalRate: s.QuotaRenewalRate,
		AccessRights:     make(map[string]*pb.AccessDefinition, len(s.AccessRights)),
		OrgId:            s.OrgID, OauthClientId: s.OauthClientID, OauthKeys: s.OauthKeys,
		BasicAuthData: &pb.BasicAuthData{Password: s.BasicAuthPassword, Hash: s.BasicAuthHash},
		JwtData:       &pb.JWTData{Secret: s.JWTSecret},
		HmacEnabled:   s.HMACEnabled, HmacSecret: s.HmacSecret, IsInactive: s.IsInactive,
		ApplyPolicyId: s.ApplyPolicyID, ApplyPolicies: s.ApplyPolicies, DataExpires: s.DataExpires,
		Monitor:                 &pb.Monitor{TriggerLimits: s.TriggerLimits},
		Metadata:                make(map[string]string, len(s.MetaData)),
		EnableDetailedRecording: s.EnableDetailedRecording, Tags: s.Tags, Alias: s.Alias,
		LastUpdated: s.LastUpdated, IdExtractorDeadline: s.IdExtractorDeadline,
		SessionLifetime: s.SessionLifetime, PostExpiryAction: s.PostExpiryAction,
		PostExpiryGracePeriod: s.PostExpiryGracePeriod, KeyId: s.KeyID,
	}
	for key, ad := range s.AccessRights {
		var urls []*pb.AccessSpec
		for _, u := range ad.AllowedURLs {
			urls = append(urls, &pb.AccessSpec{Url: u.URL, Methods: u.Methods})
		}
		p.AccessRights[key] = &pb.AccessDefinition{ApiName: ad.APIName, ApiId: ad.APIID, Versions: ad.Versions, AllowedUrls: urls}
	}
	for k, v := range s.MetaData {
		if str, ok := v.(string); ok {
			p.Metadata[k] = str
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			continue // the gateway logs and skips a value it cannot encode
		}
		p.Metadata[k] = string(b)
	}
	return p
}

// clone is a deep copy (the store hands out copies, as the gateway's Redis store does).
func (s *Session) clone() *Session {
	c := *s
	c.AccessRights = make(map[string]AccessDefinition, len(s.AccessRights))
	for k, ad := range s.AccessRights {
		ad.Versions = append([]string(nil), ad.Versions...)
		urls := make([]AccessSpec, len(ad.AllowedURLs))
		for i, u := range ad.AllowedURLs {
			urls[i] = AccessSpec{URL: u.URL, Methods: append([]string(nil), u.Methods...)}
		}
		ad.AllowedURLs = urls
		c.AccessRights[k] = ad
	}
	if s.OauthKeys != nil {
		c.OauthKeys = make(map[string]string, len(s.OauthKeys))
		for k, v := range s.OauthKeys {
			c.OauthKeys[k] = v
		}
	}
	c.MetaData = make(map[string]interface{}, len(s.MetaData))
	for k, v := range s.MetaData {
		c.MetaData[k] = v // values are JSON-like: strings, numbers, maps from the caller; not mutated here
	}
	c.TriggerLimits = append([]float64(nil), s.TriggerLimits...)
	c.ApplyPolicies = append([]string(nil), s.ApplyPolicies...)
	c.Tags = append([]string(nil), s.Tags...)
	return &c
}

// policyIDs is the gateway's SessionState.PolicyIDs.
func (s *Session) policyIDs() []string {
	if len(s.ApplyPolicies) > 0 {
		return s.ApplyPolicies
	}
	if s.ApplyPolicyID != "" {
		return []string{s.ApplyPolicyID}
	}
	return nil
}

var errPolicyNotFound = errors.New("policy not found")

// applyPolicies is what the gateway's policy Apply does with no policies loaded (this
// gateway has none): a session naming a policy is an error (the gateway's "policy not
// found"); otherwise metadata becomes non-nil and the tags are de-duplicated. The gateway
// rebuilds the tag list from a Go map, so their order is random there; here it is sorted
// (one of those orders), to keep the Objects reproducible.
func applyPolicies(s *Session) error {
	if len(s.policyIDs()) > 0 {
		return errPolicyNotFound
	}
	if s.MetaData == nil {
		s.MetaData = map[string]interface{}{}
	}
	seen := map[string]bool{}
	tags := []string{}
	for _, t := range s.Tags {
		if !seen[t] {
			seen[t] = true
			tags = append(tags, t)
		}
	}
	sort.Strings(tags)
	s.Tags = tags
	return nil
}

// SessionStore holds the sessions the auth_check hook established, by session id (the
// token, or the ID extractor's id), as the gateway's session store does. It is in memory
// and sessions do not expire: the ID extractor's id_extractor_deadline is the only expiry
// this gateway applies.
type SessionStore struct {
	mu       sync.Mutex
	sessions map[string]*Session
}

// NewSessionStore is an empty store.
func NewSessionStore() *SessionStore { return &SessionStore{sessions: map[string]*Session{}} }

// Get returns a copy of the session stored under id.
func (st *SessionStore) Get(id string) (*Session, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	s, ok := st.sessions[id]
	if !ok {
		return nil, false
	}
	return s.clone(), true
}

// Put stores a copy of s under id.
func (st *SessionStore) Put(id string, s *Session) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.sessions[id] = s.clone()
}

// Delete removes the session stored under id.
func (st *SessionStore) Delete(id string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.sessions, id)
}
