package msgchannel_test

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/msgchannel"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

const frameData = `{"header":{"appId":"` + testkit.AppID + `","msgApi":"alipay.open.mini.version.audit.passed"},` +
	`"content":{ "mini_app_id" : "2014072300007148", "note":"a } brace \" and \\ in a string {" }}`

// signedFrame returns a CONSUME frame whose x-sign signs data with Alipay's
// (the platform's) key.
func signedFrame(t testing.TB, msgID, data string) []byte {
	t.Helper()
	d := sha256.Sum256([]byte(data))
	sig, err := rsa.SignPKCS1v15(nil, testkit.AlipayKey(), crypto.SHA256, d[:])
	if err != nil {
		t.Fatal(err)
	}
	msg := `{"protocol":{"x-type":"message","x-cmd":"CONSUME","x-msgId":"` + msgID + `","x-timestamp":"1516797622752",` +
		`"x-version":"1.0","x-charset":"UTF-8","x-signType":"RSA2","x-sign":"` +
		base64.StdEncoding.EncodeToString(sig) + `"},"data":` + data + `}`
	return msgchannel.EncodeFrame("s-1", "openchannel", "10.0.0.1", []byte(msg))
}

func TestParseFrame(t *testing.T) {
	t.Parallel()
	t.Run("OK", func(t *testing.T) {
		f, err := msgchannel.ParseFrame(signedFrame(t, "m-1", frameData))
		if err != nil {
			t.Fatal(err)
		}
		if f.StreamID != "s-1" || f.FromSys != "openchannel" || f.FromSysIP != "10.0.0.1" || string(f.Data) != frameData ||
			f.Cmd != msgchannel.CmdConsume || f.MsgID != "m-1" || f.Timestamp != "1516797622752" || f.AppID != testkit.AppID ||
			f.MsgAPI != "alipay.open.mini.version.audit.passed" ||
			string(f.Content) != `{ "mini_app_id" : "2014072300007148", "note":"a } brace \" and \\ in a string {" }` {
			t.Fatalf("frame = %+v", f)
		}
	})
	t.Run("DataLookalikeInProtocol", func(t *testing.T) {
		// A naive search for "data":{ would find the one inside x-error.
		frame := bytes.Replace(signedFrame(t, "m-1", frameData), []byte(`"x-type"`),
			[]byte(`"x-error":"m-\"data\":{\"header\":{}}","x-type"`), 1)
		f, err := msgchannel.ParseFrame(frame)
		if err != nil || string(f.Data) != frameData {
			t.Fatalf("%+v %v", f, err)
		}
	})
	t.Run("NoHeaders", func(t *testing.T) {
		if got := string(msgchannel.EncodeFrame("", "", "", []byte("{}"))); got != "\r\n\r\n{}" {
			t.Fatalf("frame = %q", got)
		}
		f, err := msgchannel.ParseFrame([]byte("\r\n\r\n{\"protocol\":{\"x-type\":\"message\"}}"))
		if err != nil || f.Type != "message" {
			t.Fatalf("%+v, %v", f, err)
		}
	})
	good := signedFrame(t, "m-1", frameData)
	replace := func(old, new string) []byte { return bytes.Replace(good, []byte(old), []byte(new), 1) }
	for _, c := range []struct {
		name    string
		frame   []byte
		noFrame bool // nothing could be read to acknowledge
	}{
		{"ErrDataTwice", replace(`"data":`, `"data":{"header":{}},"data":`), true},
		{"ErrNoEmptyLine", bytes.Replace(good, []byte("\r\n\r\n"), []byte("\r\n"), 1), true},
		{"ErrNotJSON", replace(`}}`, `}`), true},
		{"ErrNUL", replace(`m-1`, "m-\x001"), true},
		{"ErrNotUTF8", replace(`2014072300007148`, "2014\xff"), true},
		{"ErrDataNotAnObject", replace(`"data":{`, `"data":[{`+"\"x\":1}],\"y\":{"), false},
		{"ErrContentNotAnObject", signedFrame(t, "m-1", `{"header":{"appId":"`+testkit.AppID+`","msgApi":"x"},"content":"abc"}`), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := msgchannel.ParseFrame(c.frame)
			if notify.ErrorCode(err) != notify.EINVALID || notify.ErrorReason(err) != "malformed_frame" {
				t.Fatalf("err = %v", err)
			}
			if (f == nil) != c.noFrame {
				t.Fatalf("frame = %+v; want nil: %v", f, c.noFrame)
			}
		})
	}
}

func TestFrame_Ack(t *testing.T) {
	t.Parallel()
	f, err := msgchannel.ParseFrame(signedFrame(t, "m-1", frameData))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("OK", func(t *testing.T) {
		// Byte for byte as the Java SDK's ProtocolData.toStr and Message.toStr.
		ack := string(f.Ack(msgchannel.AckSuccess))
		want := "from-sys:openchannel\r\nfrom-sys-ip:10.0.0.1\r\nstream-id:s-1\r\n\r\n" +
			`{"protocol":{"x-type":"message","x-cmd":"CONSUME_ACK","x-msgId":"m-1","x-version":"1.0","x-status":"SUCCESS"}}`
		if ack != want {
			t.Fatalf("ack = %q\nwant %q", ack, want)
		}
		back, err := msgchannel.ParseFrame([]byte(ack))
		if err != nil || back.Cmd != msgchannel.CmdConsumeAck || back.Status != "SUCCESS" || back.MsgID != "m-1" || back.StreamID != "s-1" {
			t.Fatalf("ack parses to %+v, %v", back, err)
		}
	})
	t.Run("NewStreamID", func(t *testing.T) {
		// A message without a stream-id gets an ack with a new one, as the
		// Java SDK's ProtocolData makes: "c" and 13 base-62 characters.
		noStream := *f
		noStream.StreamID = ""
		back, err := msgchannel.ParseFrame(noStream.Ack(msgchannel.AckFail))
		if err != nil || back.Status != "FAIL" || len(back.StreamID) != 14 || back.StreamID[0] != 'c' {
			t.Fatalf("%+v %v", back, err)
		}
	})
}

func TestRegisterAnswer(t *testing.T) {
	t.Parallel()
	v := testkit.Verifier(t, newApp(testkit.AppID, testkit.AppKey(), alipay.DeliverWebSocket))
	answer := func(k *rsa.PrivateKey, response string) []byte {
		d := sha256.Sum256([]byte(response))
		sig, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, d[:])
		if err != nil {
			t.Fatal(err)
		}
		return []byte(`{"response": ` + response + `, "sign":"` + base64.StdEncoding.EncodeToString(sig) + `"}`)
	}
	ok := `{"code":"10000","msg":"Success","link_token":"tok-1"}`
	t.Run("OK", func(t *testing.T) {
		tok, err := msgchannel.RegisterAnswer(v, testkit.AppID, answer(testkit.AlipayKey(), ok))
		if err != nil || tok != "tok-1" {
			t.Fatalf("token %q, %v", tok, err)
		}
	})
	t.Run("ErrOtherKey", func(t *testing.T) {
		if _, err := msgchannel.RegisterAnswer(v, testkit.AppID, answer(testkit.OtherKey(), ok)); err == nil {
			t.Fatal("an answer signed by another key was accepted")
		}
	})
	t.Run("ErrUnsigned", func(t *testing.T) {
		if _, err := msgchannel.RegisterAnswer(v, testkit.AppID, []byte(`{"response":`+ok+`}`)); err == nil {
			t.Fatal("an unsigned answer was accepted")
		}
	})
	t.Run("ErrRefused", func(t *testing.T) {
		_, err := msgchannel.RegisterAnswer(v, testkit.AppID, []byte(`{"response":{"code":"40004","msg":"Business Failed","sub_code":"isv.invalid-signature"}}`))
		if err == nil || !strings.Contains(err.Error(), "isv.invalid-signature") {
			t.Fatalf("refusal: %v", err)
		}
	})
	t.Run("ErrHTML", func(t *testing.T) {
		if _, err := msgchannel.RegisterAnswer(v, testkit.AppID, []byte(`<html>`)); err == nil {
			t.Fatal("HTML accepted")
		}
	})
}

func TestSignParams(t *testing.T) {
	t.Parallel()
	t.Run("OK", func(t *testing.T) {
		p, err := msgchannel.SignParams(map[string]string{"app_id": testkit.AppID, "charset": "UTF-8", "timestamp": "1", "nonce": "n"}, testkit.AppKey())
		if err != nil {
			t.Fatal(err)
		}
		if p["sign_type"] != "RSA2" {
			t.Fatalf("params = %v", p)
		}
		content := "app_id=" + testkit.AppID + "&charset=UTF-8&nonce=n&sign_type=RSA2&timestamp=1"
		sig, _ := base64.StdEncoding.DecodeString(p["sign"])
		d := sha256.Sum256([]byte(content))
		if err := rsa.VerifyPKCS1v15(&testkit.AppKey().PublicKey, crypto.SHA256, d[:], sig); err != nil {
			t.Fatalf("sign does not verify over %q", content)
		}
	})
	t.Run("ErrNoKey", func(t *testing.T) {
		if _, err := msgchannel.SignParams(map[string]string{}, nil); err == nil {
			t.Fatal("signed with no key")
		}
	})
}

// FuzzParseFrame: any frame is parsed without a panic, and a message that
// verifies has data that is a JSON object holding its content.
func FuzzParseFrame(f *testing.F) {
	f.Add(signedFrame(f, "m-1", frameData))
	f.Add([]byte("stream-id:1\r\n\r\n{\"protocol\":{\"x-cmd\":\"CONSUME\"},\"data\":{\"header\":{}}}"))
	f.Add([]byte("\r\n\r\n{\"protocol\":{},\"data\":null}"))
	v := testkit.Verifier(f, newApp(testkit.AppID, testkit.AppKey(), alipay.DeliverWebSocket))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := msgchannel.ParseFrame(b)
		if err != nil {
			if notify.ErrorCode(err) != notify.EINVALID {
				t.Fatalf("error %v has code %s", err, notify.ErrorCode(err))
			}
			return
		}
		n, err := v.VerifyChannelMessage(testkit.AppID, fr.Message(), time.Now())
		if err == nil {
			if n == nil || !json.Valid(fr.Data) || !bytes.Contains(fr.Data, fr.Content) {
				t.Fatalf("accepted %q as %+v", b, n)
			}
			return
		}
		if c := notify.ErrorCode(err); c != notify.EINVALID && c != notify.EUNVERIFIED && c != notify.ETOOEARLY {
			t.Fatalf("error %v has code %s", err, c)
		}
	})
}
