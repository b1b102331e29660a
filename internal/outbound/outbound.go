// Package outbound calls Alipay's OpenAPI for the ISV: subscription template
// messages and the merchant authorization flow.
package outbound

// Service is the outbound side of the gateway.
type Service struct{}
