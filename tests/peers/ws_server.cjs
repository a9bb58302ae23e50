// A third-party WebSocket server for tests: Node's `ws` package.
//
// Usage: node ws_server.cjs '<perMessageDeflate options as JSON, or false>'
// Prints `LISTENING <port>`, then one JSON line per event: {"event":"headers", "extensions"}
// on each connection and {"event":"closed","code"} at its end. Echoes every message back.
// `ws` is found through NODE_PATH (scripts/test.sh installs it under target/node-peers).
'use strict';
const { WebSocketServer } = require('ws');

const perMessageDeflate = JSON.parse(process.argv[2] || 'false');
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate, maxPayload: 1 << 24 });
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

wss.on('listening', () => process.stdout.write(`LISTENING ${wss.address().port}\n`));
wss.on('connection', (ws, req) => {
  emit({ event: 'headers', path: req.url, extensions: ws.extensions || '' });
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('close', (code, reason) => emit({ event: 'closed', code, reason: reason.toString() }));
});
