/**
 * Control-plane errors. Each carries a stable code (the API and the CLI print it; scripts may match on it)
 * and, for bad input, the field it is about. HTTP status is decided here, in one place.
 */

export const ERROR_STATUS = {
  WEFT_ERR_VALIDATION: 400,
  WEFT_ERR_UNAUTHORIZED: 401,
  WEFT_ERR_TOTP_REQUIRED: 401,
  WEFT_ERR_FORBIDDEN: 403,
  WEFT_ERR_CSRF: 403,
  WEFT_ERR_NOT_FOUND: 404,
  WEFT_ERR_MEMBER_NOT_FOUND: 404,
  WEFT_ERR_GROUP_NOT_FOUND: 404,
  WEFT_ERR_ROUTE_NOT_FOUND: 404,
  WEFT_ERR_POLICY_NOT_FOUND: 404,
  WEFT_ERR_SITE_NOT_FOUND: 404,
  WEFT_ERR_TOKEN_NOT_FOUND: 404,
  WEFT_ERR_GATEWAY_NOT_FOUND: 404,
  WEFT_ERR_LINK_INVALID: 404,
  WEFT_ERR_MEMBER_EXISTS: 409,
  WEFT_ERR_GROUP_EXISTS: 409,
  WEFT_ERR_ROUTE_EXISTS: 409,
  WEFT_ERR_POLICY_EXISTS: 409,
  WEFT_ERR_SITE_EXISTS: 409,
  WEFT_ERR_SUBNET_CONFLICT: 409,
  WEFT_ERR_GROUP_IN_USE: 409,
  WEFT_ERR_GATEWAY_IN_USE: 409,
  WEFT_ERR_IP_CONFLICT: 409,
  WEFT_ERR_KEY_CONFLICT: 409,
  WEFT_ERR_IP_OUTSIDE_SUBNET: 400,
  WEFT_ERR_SUBNET_FULL: 409,
  WEFT_ERR_NO_PRIVATE_KEY: 409,
  WEFT_ERR_NOT_INITIALIZED: 409,
  WEFT_ERR_OPENVPN_OFF: 409,
  WEFT_ERR_ALREADY_INITIALIZED: 409,
  WEFT_ERR_TOTP_ALREADY_ENABLED: 409,
  WEFT_ERR_TOTP_NOT_ENABLED: 409,
  WEFT_ERR_TOTP_NOT_STARTED: 409,
  WEFT_ERR_RATE_LIMITED: 429,
  WEFT_ERR_PAYLOAD_TOO_LARGE: 413,
  WEFT_ERR_INTERNAL: 500,
  WEFT_ERR_STORE_UNAVAILABLE: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class WeftError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** The input field the error is about, as the caller named it ("ip", "members[3].groups[0]"). */
    readonly field?: string,
  ) {
    super(message);
    this.name = 'WeftError';
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }

  toJSON(): { code: ErrorCode; message: string; field?: string } {
    return this.field === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, field: this.field };
  }
}

export function invalid(field: string, message: string): WeftError {
  return new WeftError('WEFT_ERR_VALIDATION', `${field}: ${message}`, field);
}

/**
 * An error the operator can act on, such as a bad file or a port in use: the CLI prints its message as it is,
 * without a stack trace, and exits with `exitCode`.
 */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}
