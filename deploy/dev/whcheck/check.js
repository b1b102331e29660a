#!/usr/bin/env node
// check.js: the official Standard Webhooks JavaScript library
// (standardwebhooks, pinned in package.json) signs and verifies webhooks,
// for internal/stdwebhook/interop_test.go.
//
// stdin:  {"secrets": ["whsec_...", ...],
//          "verify": [{"secret": 0, "headers": {"webhook-id": ..., ...}, "body": "..."}, ...],
//          "sign":   [{"secret": 0, "id": "...", "timestamp": 1614265330, "body": "..."}, ...]}
// stdout: {"verify": ["ok" or the library's error message, ...],
//          "sign":   ["v1,...", ...]}
// Verifying is the library's Webhook.verify, as a receiver calls it (its
// clock, its 5-minute tolerance); signing is its Webhook.sign.
'use strict';
const { Webhook } = require('standardwebhooks');

const chunks = [];
process.stdin.on('data', c => chunks.push(c));
process.stdin.on('end', () => {
  const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  const hooks = input.secrets.map(s => new Webhook(s));
  const verify = (input.verify || []).map(c => {
    try {
      // The body as a receiver has it: the bytes received.
      hooks[c.secret].verify(Buffer.from(c.body, 'utf8'), c.headers);
      return 'ok';
    } catch (err) {
      return `${err && err.name}: ${err && err.message}`;
    }
  });
  const sign = (input.sign || []).map(c => hooks[c.secret].sign(c.id, new Date(c.timestamp * 1000), c.body));
  process.stdout.write(JSON.stringify({ verify, sign }) + '\n');
});
