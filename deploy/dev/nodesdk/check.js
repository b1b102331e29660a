#!/usr/bin/env node
// check.js: the official Alipay Node.js SDK (alipay-sdk, pinned in
// package.json) judges notifications, for internal/alipay/agreement_test.go.
//
// stdin:  {"publicKey": "<PEM or bare base64 SPKI>", "forms": [{"k": "v", ...}, ...]}
// stdout: a JSON array of booleans, one per form: the SDK's own
//         checkNotifySignV2(form), which verifies the values as given (decoded
//         once, as a web framework hands them over) rather than decoding them
//         again. A form the SDK throws on counts as refused (the error goes to
//         stderr).
'use strict';
const { generateKeyPairSync } = require('node:crypto');
const { AlipaySdk } = require('alipay-sdk');

const chunks = [];
process.stdin.on('data', c => chunks.push(c));
process.stdin.on('end', () => {
  const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  // The constructor wants an app id and a private key; neither plays a part
  // in verifying a notification.
  const { privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  const sdk = new AlipaySdk({ appId: '0000000000000000', privateKey, alipayPublicKey: input.publicKey });
  const out = input.forms.map((form, i) => {
    try {
      return sdk.checkNotifySignV2(form) === true;
    } catch (err) {
      process.stderr.write(`form ${i}: ${err && err.name}: ${err && err.message}\n`);
      return false;
    }
  });
  process.stdout.write(JSON.stringify(out) + '\n');
});
