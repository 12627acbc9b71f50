/**
 * The two primitives of tls-crypt and tls-crypt-v2 (src/openvpn/tls-crypt*.ts), HMAC-SHA256 and AES-256-CTR
 * through node:crypto, checked against their published vectors. The values are transcribed from the
 * documents named above each one.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, createHmac } from 'node:crypto';

function h(text: string): Buffer {
  const clean = text.replace(/\s+/g, '');
  assert.match(clean, /^(?:[0-9a-fA-F]{2})*$/, 'test vector is not whole bytes of hex');
  return Buffer.from(clean, 'hex');
}

const hmacSha256 = (key: Buffer, data: Buffer): string =>
  createHmac('sha256', key).update(data).digest('hex');

describe('HMAC-SHA256 (RFC 4231 §4)', () => {
  const cases: { name: string; key: Buffer; data: Buffer; mac: string; truncate?: number }[] = [
    {
      name: 'test case 1 (20-byte key)',
      key: Buffer.alloc(20, 0x0b),
      data: Buffer.from('Hi There'),
      mac: 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',
    },
    {
      name: 'test case 2 (key shorter than the output)',
      key: Buffer.from('Jefe'),
      data: Buffer.from('what do ya want for nothing?'),
      mac: '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    },
    {
      name: 'test case 3 (50 bytes of 0xdd)',
      key: Buffer.alloc(20, 0xaa),
      data: Buffer.alloc(50, 0xdd),
      mac: '773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe',
    },
    {
      name: 'test case 4 (25-byte key, 50 bytes of 0xcd)',
      key: h('0102030405060708090a0b0c0d0e0f10111213141516171819'),
      data: Buffer.alloc(50, 0xcd),
      mac: '82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b',
    },
    {
      name: 'test case 5 (output truncated to 128 bits)',
      key: Buffer.alloc(20, 0x0c),
      data: Buffer.from('Test With Truncation'),
      mac: 'a3b6167473100ee06e0c796c2955552b',
      truncate: 16,
    },
    {
      name: 'test case 6 (131-byte key, hashed first)',
      key: Buffer.alloc(131, 0xaa),
      data: Buffer.from('Test Using Larger Than Block-Size Key - Hash Key First'),
      mac: '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
    },
    {
      name: 'test case 7 (131-byte key, data longer than a block)',
      key: Buffer.alloc(131, 0xaa),
      data: Buffer.from(
        'This is a test using a larger than block-size key and a larger than block-size data. ' +
          'The key needs to be hashed before being used by the HMAC algorithm.',
      ),
      mac: '9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2',
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const full = hmacSha256(c.key, c.data);
      assert.equal(c.truncate === undefined ? full : full.slice(0, c.truncate * 2), c.mac);
    });
  }

  it('HMAC over two updates (header, then plaintext, as tls-crypt feeds it) equals HMAC over the whole', () => {
    const key = Buffer.alloc(20, 0x0b);
    const mac = createHmac('sha256', key).update('Hi ').update('There').digest('hex');
    assert.equal(mac, 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7');
  });
});

describe('AES-256-CTR (NIST SP 800-38A, Appendix F.5.5 / F.5.6)', () => {
  const key = h('603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4');
  const counter = h('f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff');
  const plaintext = h(`6bc1bee22e409f96e93d7e117393172a
                       ae2d8a571e03ac9c9eb76fac45af8e51
                       30c81c46a35ce411e5fbc1191a0a52ef
                       f69f2445df4f9b17ad2b417be66c3710`);
  const ciphertext = h(`601ec313775789a5b7a7f504bbf3d228
                        f443e3ca4d62b59aca84e990cacaf5c5
                        2b0930daa23de94ce87017ba2d84988d
                        dfc9c58db67aada613c2dd08457941a6`);

  it('F.5.5 CTR-AES256.Encrypt: four blocks', () => {
    const cipher = createCipheriv('aes-256-ctr', key, counter);
    assert.equal(
      Buffer.concat([cipher.update(plaintext), cipher.final()]).toString('hex'),
      ciphertext.toString('hex'),
    );
  });

  it('F.5.6 CTR-AES256.Decrypt: four blocks', () => {
    const decipher = createDecipheriv('aes-256-ctr', key, counter);
    assert.equal(
      Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('hex'),
      plaintext.toString('hex'),
    );
  });

  it('F.5.5 in pieces that do not follow block boundaries (the counter carries across update calls)', () => {
    const cipher = createCipheriv('aes-256-ctr', key, counter);
    const parts = [cipher.update(plaintext.subarray(0, 7)), cipher.update(plaintext.subarray(7, 40))];
    parts.push(cipher.update(plaintext.subarray(40)), cipher.final());
    assert.equal(Buffer.concat(parts).toString('hex'), ciphertext.toString('hex'));
  });

  it('F.5.5 block 3 alone, from its own counter block (…ff01)', () => {
    const cipher = createCipheriv('aes-256-ctr', key, h('f0f1f2f3f4f5f6f7f8f9fafbfcfdff01'));
    assert.equal(
      cipher.update(plaintext.subarray(32, 48)).toString('hex'),
      '2b0930daa23de94ce87017ba2d84988d',
    );
  });
});
