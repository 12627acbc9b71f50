/**
 * QR codes of member configs, for the WireGuard mobile apps' "scan from QR code".
 */
import QRCode from 'qrcode';

export async function renderQr(text: string, format: 'png'): Promise<Buffer>;
export async function renderQr(text: string, format: 'svg' | 'terminal'): Promise<string>;
export async function renderQr(text: string, format: 'png' | 'svg' | 'terminal'): Promise<Buffer | string> {
  // Error correction L keeps a ~300-byte config at a size phone cameras read reliably.
  const options = { errorCorrectionLevel: 'L' as const, margin: 2 };
  if (format === 'png') return QRCode.toBuffer(text, { ...options, type: 'png', scale: 6 });
  if (format === 'svg') return QRCode.toString(text, { ...options, type: 'svg' });
  return QRCode.toString(text, { ...options, type: 'terminal', small: true });
}
