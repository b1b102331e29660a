#!/usr/bin/env node
// receiver.js: the Node receiver of docs/webhook-signing.md: an HTTP server
// that verifies the gateway's events with the official Standard Webhooks
// library (standardwebhooks), answers 204, or 400 when one does not verify,
// and prints each one's webhook-id and type. internal/stdwebhook's tests run
// it against the gateway's signing.
//
//   WEBHOOK_SECRET=whsec_... PORT=3000 node receiver.js
'use strict';
const http = require('node:http');
const { Webhook } = require('standardwebhooks');

const wh = new Webhook(process.env.WEBHOOK_SECRET); // the endpoint's whsec_...
const maxBytes = 1 << 20;

const server = http.createServer((req, res) => {
  const chunks = [];
  let size = 0;
  req.on('data', chunk => {
    size += chunk.length;
    if (size <= maxBytes) chunks.push(chunk);
  });
  req.on('end', () => {
    if (size > maxBytes) {
      res.writeHead(413).end();
      return;
    }
    // Verify the bytes as received (not JSON.stringify of a parsed body).
    // verify checks webhook-id, webhook-timestamp (5 minutes either way) and
    // every v1 entry of webhook-signature, and returns the parsed body.
    let event;
    try {
      event = wh.verify(Buffer.concat(chunks), req.headers);
    } catch (err) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end(`${err.message}\n`);
      return;
    }
    // webhook-id (the body's id) stays the same across retries: use it to do
    // each event's work once.
    console.log(`${req.headers['webhook-id']} ${event.type}`);
    res.writeHead(204).end();
  });
});
server.listen(Number(process.env.PORT || 3000), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}/`);
});
