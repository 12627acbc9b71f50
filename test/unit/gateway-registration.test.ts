import assert from 'node:assert/strict';
import { test } from 'node:test';
import { defaultMeshPort, meshEndpoint, meshPort } from '../../src/control/gateway-registration.js';

test('the mesh port defaults to the listen port + 1 (- 1 at the top of the range)', () => {
  assert.equal(meshPort('--mesh-port', undefined, 51820), 51821);
  assert.equal(defaultMeshPort(65535), 65534);
});

test('--mesh-port: an integer 1-65535 other than the listen port, the error naming the flag', () => {
  assert.equal(meshPort('--mesh-port', '4000', 51820), 4000);
  assert.equal(meshPort('--mesh-port', 1, 51820), 1);
  for (const bad of ['0', '65536', '-1', 'x', '51821.5', '', ' 4000'])
    assert.throws(() => meshPort('--mesh-port', bad, 51820), /--mesh-port.*integer from 1 to 65535/);
  assert.throws(
    () => meshPort('--mesh-port', '51820', 51820),
    /--mesh-port.*differ from the members' listen port/,
  );
});

test("a gateway's mesh endpoint: its endpoint's host, with its mesh port", () => {
  assert.deepEqual(meshEndpoint({ name: 'g', endpoint: '192.0.2.1:51820', meshPort: 4000 }, 51820), {
    host: '192.0.2.1',
    port: 4000,
  });
  assert.deepEqual(meshEndpoint({ name: 'g', endpoint: 'vpn.example.net', meshPort: null }, 443), {
    host: 'vpn.example.net',
    port: 444,
  });
  assert.deepEqual(meshEndpoint({ name: 'g', endpoint: '[2001:db8::1]:51820', meshPort: null }, 51820), {
    host: '2001:db8::1',
    port: 51821,
  });
  assert.throws(
    () => meshEndpoint({ name: 'g', endpoint: 'bad host', meshPort: null }, 51820),
    /gateway g: endpoint/,
  );
});
