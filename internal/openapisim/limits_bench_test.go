package openapisim

import (
	"crypto/rsa"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/devpki"
)

// benchRequest is one signed send, signed once: the simulator does not
// refuse a replay, so the benchmark measures the simulator, not the
// client's signing.
func benchRequest(b *testing.B) string {
	b.Helper()
	p := url.Values{
		"app_id": {benchAppID}, "method": {MethodTemplateMessageSend}, "format": {"JSON"}, "charset": {"utf-8"},
		"sign_type": {"RSA2"}, "timestamp": {time.Now().Format("2006-01-02 15:04:05")}, "version": {"1.0"},
		"biz_content": {`{"to_user_id":"2088000000000001","user_template_id":"tpl","page":"pages/index","data":"{\"keyword1\":{\"value\":\"x\"}}"}`},
	}
	sig, err := devpki.SignRSA2(benchKeys(b)[0], []byte(SignedContent(p)))
	if err != nil {
		b.Fatal(err)
	}
	p.Set("sign", sig)
	return p.Encode()
}

const benchAppID = "2021000000000001"

// benchKeys are the app's key and Alipay's (testkit imports this package).
var benchKeys = func() func(b *testing.B) [2]*rsa.PrivateKey {
	keys := sync.OnceValues(func() ([2]*rsa.PrivateKey, error) {
		app, err := devpki.NewKey()
		if err != nil {
			return [2]*rsa.PrivateKey{}, err
		}
		alipay, err := devpki.NewKey()
		return [2]*rsa.PrivateKey{app, alipay}, err
	})
	return func(b *testing.B) [2]*rsa.PrivateKey {
		k, err := keys()
		if err != nil {
			b.Fatal(err)
		}
		return k
	}
}()

func benchSim(b *testing.B, cache bool) *Sim {
	k := benchKeys(b)
	s := New(Config{Apps: []App{{ID: benchAppID, Pub: &k[0].PublicKey}}, SignKey: k[1], Lean: true})
	s.lim.noSigCache = !cache
	return s
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSim_Answer is the simulator's own CPU per answered send (the
// handler called directly: parse, verify the request, record, answer,
// sign), with and without the answer-signature cache.
func BenchmarkSim_Answer(b *testing.B) {
	body := benchRequest(b)
	for _, cache := range []bool{true, false} {
		name := "cache"
		if !cache {
			name = "nocache"
		}
		b.Run(name, func(b *testing.B) {
			s := benchSim(b, cache)
			defer s.Close()
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodPost, "/gateway.do", strings.NewReader(body))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				w := httptest.NewRecorder()
				s.ServeHTTP(w, r)
				if w.Code != 200 || !strings.Contains(w.Body.String(), `"10000"`) {
					b.Fatalf("answer %d %s", w.Code, w.Body)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkSim_AnswerHTTP is the same over loopback HTTP with 16
// goroutines: cpu-ns/op is the whole process's CPU per send, the client's
// HTTP included (not its signing: the request is signed once).
func BenchmarkSim_AnswerHTTP(b *testing.B) {
	body := benchRequest(b)
	for _, cache := range []bool{true, false} {
		name := "cache"
		if !cache {
			name = "nocache"
		}
		b.Run(name, func(b *testing.B) {
			s := benchSim(b, cache)
			defer s.Close()
			srv := httptest.NewServer(s)
			defer srv.Close()
			c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.SetParallelism(8)
			cpu := cpuTime()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := c.Post(srv.URL+"/gateway.do", "application/x-www-form-urlencoded", strings.NewReader(body))
					if err != nil {
						b.Error(err)
						return
					}
					ans, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || !strings.Contains(string(ans), `"10000"`) {
						b.Errorf("answer %d %s", resp.StatusCode, ans)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}
