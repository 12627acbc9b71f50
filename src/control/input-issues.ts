/**
 * A problem zod found in a request body or a state file, in the control plane's words: the field as
 * validate.ts names fields ("members[2].groups[0]", "ports.from") and a message that says what the field
 * must be ("is required", "must be a string", "must be one of allow, deny"), never zod's own text.
 */
import type { z } from 'zod';

/** A zod path in the control plane's notation: `groups[1]`, `ports.from`. */
export function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}

const TYPE_NAMES: Readonly<Record<string, string>> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  array: 'a list',
  object: 'an object',
  null: 'null',
};

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'number') return Number.isInteger(value) ? 'a whole number' : 'a number';
  return TYPE_NAMES[typeof value] ?? typeof value;
}

/** The value at `path` inside `root`, or undefined when the path leads nowhere. */
function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v = root;
  for (const part of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[part];
  }
  return v;
}

function sizeText(origin: string | undefined, n: number | bigint, what: 'least' | 'most'): string {
  if (origin === 'array' || origin === 'set')
    return `must have at ${what} ${n} ${n === 1 ? 'entry' : 'entries'}`;
  if (origin === 'string')
    return n === 1 && what === 'least' ? 'must not be empty' : `must be at ${what} ${n} characters`;
  return `must be at ${what} ${n}`;
}

/** Whether zod wrote the message (a refinement's own message is kept as it is). */
function zodWording(message: string): boolean {
  return /^(Invalid|Too (big|small)|Unrecognized)/.test(message);
}

/** What `issue` says about the input `root`, with the field it is about ("" for the input as a whole). */
export function describeIssue(issue: z.core.$ZodIssue, root: unknown): { field: string; message: string } {
  const field = fieldPath(issue.path);
  const value = valueAt(root, issue.path);
  switch (issue.code) {
    case 'invalid_type': {
      if (value === undefined) return { field, message: 'is required' };
      const expected = TYPE_NAMES[issue.expected] ?? issue.expected;
      return { field, message: `must be ${expected}, not ${kindOf(value)}` };
    }
    case 'invalid_value':
      return {
        field,
        message: `must be ${issue.values.length === 1 ? '' : 'one of '}${issue.values.map((x) => String(x)).join(', ')}`,
      };
    case 'too_small':
      return { field, message: sizeText(issue.origin, issue.minimum, 'least') };
    case 'too_big':
      return { field, message: sizeText(issue.origin, issue.maximum, 'most') };
    case 'unrecognized_keys': {
      const key = fieldPath([...issue.path, issue.keys[0] ?? '']);
      return { field: key, message: 'is not a known field' };
    }
    case 'invalid_union': {
      // The form that came closest (its first problem lies deepest) says best what is wrong.
      const closest = issue.errors
        .map((branch) => branch[0])
        .filter((i): i is z.core.$ZodIssue => i !== undefined && i.path.length > 0)
        .sort((x, y) => y.path.length - x.path.length)[0];
      if (closest) return describeIssue({ ...closest, path: [...issue.path, ...closest.path] }, root);
      return { field, message: `is not in any of the forms this field takes (it is ${kindOf(value)})` };
    }
    default:
      return {
        field,
        message: zodWording(issue.message)
          ? `is not valid (${issue.code.replace(/_/g, ' ')})`
          : issue.message,
      };
  }
}
