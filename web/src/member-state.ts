/**
 * A member's state as the console shows it: the API says `disabled` and `active` (enabled and not expired);
 * a member enabled but not active has passed its expiry.
 */
import type { Member } from './types.js';

export type MemberState = 'enabled' | 'disabled' | 'expired';

export function memberState(m: Pick<Member, 'disabled' | 'active'>): MemberState {
  if (m.disabled) return 'disabled';
  return m.active ? 'enabled' : 'expired';
}
