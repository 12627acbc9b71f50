/**
 * What a gateway registers about itself for the peering mesh (`weft gateway join`, src/server/mesh.ts): its
 * mesh UDP port, checked here, and where the other gateways reach its mesh interface.
 */
import { invalid } from './errors.js';
import { endpoint, integer } from './validate.js';

/**
 * The mesh port when none is given: the network's member-facing listen port + 1 (one below it at the top of the
 * range, so it is always a valid port distinct from the listen port).
 */
export function defaultMeshPort(listenPort: number): number {
  return listenPort < 65535 ? listenPort + 1 : listenPort - 1;
}

/**
 * Checks a mesh port (`--mesh-port`): an integer from 1 to 65535, other than the members' listen port (both are
 * UDP sockets on the same host). Undefined: the default.
 */
export function meshPort(field: string, value: unknown, listenPort: number): number {
  if (value === undefined) return defaultMeshPort(listenPort);
  const port = integer(field, value, 1, 65535);
  if (port === listenPort)
    throw invalid(
      field,
      `must differ from the members' listen port (${listenPort}), which is on the same host`,
    );
  return port;
}

/** A registration as the mesh reads it. */
export interface MeshRegistration {
  readonly name: string;
  /** host[:port] where members reach it: the mesh uses its host. */
  readonly endpoint: string;
  readonly meshPort: number | null;
}

/**
 * Where the other gateways reach a gateway's mesh interface: the host of its registered endpoint and its mesh
 * port (the network's listen port + 1 on a registration from before the mesh). A host that is not an address is
 * resolved by the caller.
 */
export function meshEndpoint(g: MeshRegistration, listenPort: number): { host: string; port: number } {
  const { host } = endpoint(`gateway ${g.name}: endpoint`, g.endpoint);
  return { host, port: g.meshPort ?? defaultMeshPort(listenPort) };
}
