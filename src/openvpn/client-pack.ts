/**
 * Client packs: one script per member and operating system that installs the VPN client unattended, puts the
 * member's config (embedded in the script) where the system's service starts it at boot, and starts it.
 *
 *   windows  PowerShell. OpenVPN: the MSI (next to the script, or downloaded) with
 *            `msiexec /i OpenVPN-….msi ADDLOCAL=OpenVPN.Service,OpenVPN,Drivers,Drivers.Wintun /passive`
 *            (2.5/2.6; a 2.7 MSI has no Wintun feature and takes Drivers.OvpnDco), the profile in
 *            `C:\Program Files\OpenVPN\config-auto\` for the OpenVPNService service.
 *            WireGuard: the MSI, then `wireguard.exe /installtunnelservice C:\ProgramData\Weft\weft.conf`.
 *            With multicast on, then: once the tunnel holds the member's address, the tunnel's interface
 *            metric is lowered and 224.0.0.0/4 (and ff00::/8) routed through it with metric 1, so Windows
 *            sends multicast into the tunnel rather than out of the LAN NIC.
 *   linux    POSIX sh. The package from apt or dnf; `openvpn-client@weft` (/etc/openvpn/client/weft.conf) or
 *            `wg-quick@weft` (/etc/wireguard/weft.conf), enabled and started with systemctl.
 *   macos    POSIX sh, Homebrew. OpenVPN: Tunnelblick (cask), which then installs the profile (it asks for the
 *            administrator password once). WireGuard: wireguard-tools with wireguard-go, `wg-quick up`.
 *
 * The config holds the member's private key, so a pack is a secret: written 0600 by the CLI, sent with
 * `cache-control: no-store` by the API, and each script writes the config readable by administrators only.
 */

export const PACK_OSES = ['windows', 'linux', 'macos'] as const;
export type PackOs = (typeof PACK_OSES)[number];
export const PACK_PROTOCOLS = ['openvpn', 'wireguard'] as const;
export type PackProtocol = (typeof PACK_PROTOCOLS)[number];

/** The OpenVPN MSI a Windows pack downloads when none lies next to it (an operator may pass -MsiUrl). */
export const DEFAULT_OPENVPN_MSI_URL =
  'https://swupdate.openvpn.org/community/releases/OpenVPN-2.6.14-I001-amd64.msi';
/** The WireGuard MSI a Windows pack downloads when none lies next to it. */
export const DEFAULT_WIREGUARD_MSI_URL =
  'https://download.wireguard.com/windows-client/wireguard-amd64-0.5.3.msi';

/** The name of the tunnel on the member's device: the config file's base name and the service instance. */
const TUNNEL = 'weft';

export interface ClientPackInput {
  readonly os: PackOs;
  readonly protocol: PackProtocol;
  readonly memberName: string;
  /** The `.ovpn` profile or the wg-quick config, as handed out. */
  readonly config: string;
  /**
   * With multicast on: the member's tunnel addresses. A Windows pack then makes the tunnel the interface
   * Windows sends multicast from (docs/multicast.md, Clients); IPv6 (ff00::/8) too where `address6` is given.
   */
  readonly multicast?: { readonly address4: string; readonly address6: string | null };
}

export interface ClientPack {
  readonly fileName: string;
  readonly mediaType: string;
  readonly script: string;
}

/** A POSIX shell word: single quotes, each ' written as '\'' . */
export function shQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** A PowerShell verbatim string: single quotes, each ' doubled (about_Quoting_Rules). */
export function psQuote(text: string): string {
  return `'${text.replace(/['‘’‚‛]/g, (q) => q + q)}'`;
}

/** A line that would end the here-document/here-string the config is embedded in. */
function assertEmbeddable(config: string, terminator: RegExp, what: string): void {
  if (terminator.test(config)) throw new RangeError(`the config holds a line that would end the ${what}`);
}

function heredoc(config: string): { start: string; end: string } {
  const end = 'WEFT_CONFIG_END';
  assertEmbeddable(config, new RegExp(`^${end}$`, 'm'), 'here-document');
  return { start: `<<'${end}'`, end };
}

/** The config as it goes into a script: LF line ends, one final newline. */
function normalized(config: string): string {
  return config.replace(/\r\n?/g, '\n').replace(/\n*$/, '\n');
}

export function clientPack(input: ClientPackInput): ClientPack {
  const config = normalized(input.config);
  const base = `weft-${input.memberName}-${input.protocol}-${input.os}`;
  switch (input.os) {
    case 'windows':
      return {
        fileName: `${base}.ps1`,
        mediaType: 'text/plain',
        script:
          input.protocol === 'openvpn'
            ? windowsOpenVpn(input.memberName, config, input.multicast)
            : windowsWireGuard(input.memberName, config, input.multicast),
      };
    case 'linux':
      return {
        fileName: `${base}.sh`,
        mediaType: 'text/x-shellscript',
        script:
          input.protocol === 'openvpn'
            ? linuxOpenVpn(input.memberName, config)
            : linuxWireGuard(input.memberName, config),
      };
    case 'macos':
      return {
        fileName: `${base}.sh`,
        mediaType: 'text/x-shellscript',
        script:
          input.protocol === 'openvpn'
            ? macosOpenVpn(input.memberName, config)
            : macosWireGuard(input.memberName, config),
      };
  }
}

// ---------------------------------------------------------------------------------------------------------
// Windows (PowerShell 5.1 and later)

function psConfig(config: string): string {
  // A verbatim here-string ends at a line starting with '@; the config would have to hold one to break out.
  assertEmbeddable(config, /^'@/m, 'PowerShell here-string');
  return `$config = @'\n${config}'@`;
}

/** Shared head: elevation check, strict errors, the member name, and how to find or fetch an MSI. */
function psHead(memberName: string, what: string, defaultUrl: string, msiPattern: string): string {
  return `# Weft client pack: ${what} for member ${memberName} (Windows).
# Run it in an elevated PowerShell (Run as administrator):
#   powershell -ExecutionPolicy Bypass -File .\\${`weft-${memberName}`}-*.ps1
# It holds the member's private key: delete it once the tunnel is up.
param(
  # An MSI to install; default: the newest ${msiPattern} next to this script, else -MsiUrl is downloaded.
  [string]$Msi = '',
  [string]$MsiUrl = ${psQuote(defaultUrl)},
  # When given, the MSI's SHA-256 (hex) must match before it is installed.
  [string]$MsiSha256 = ''
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3
$memberName = ${psQuote(memberName)}
$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
  throw 'Run this script as administrator.'
}

function Get-Msi {
  if ($Msi -ne '') { return (Resolve-Path -LiteralPath $Msi).Path }
  $here = Get-ChildItem -LiteralPath $PSScriptRoot -Filter ${psQuote(msiPattern)} -ErrorAction SilentlyContinue |
    Sort-Object Name -Descending | Select-Object -First 1
  if ($null -ne $here) { return $here.FullName }
  $target = Join-Path $env:TEMP ([IO.Path]::GetFileName(([Uri]$MsiUrl).AbsolutePath))
  Write-Host "Downloading $MsiUrl"
  [Net.ServicePointManager]::SecurityProtocol = [Net.SecurityProtocolType]::Tls12
  Invoke-WebRequest -Uri $MsiUrl -OutFile $target -UseBasicParsing
  return $target
}

function Assert-Sha256([string]$path) {
  if ($MsiSha256 -eq '') { return }
  $actual = (Get-FileHash -LiteralPath $path -Algorithm SHA256).Hash
  if ($actual -ne $MsiSha256.ToUpperInvariant()) { throw "SHA-256 of $path is $actual, not $MsiSha256" }
}

function Install-Msi([string]$path, [string[]]$properties) {
  $log = Join-Path $env:TEMP 'weft-client-install.log'
  $arguments = @('/i', ('"' + $path + '"')) + $properties + @('/passive', '/norestart', '/l*v', ('"' + $log + '"'))
  $process = Start-Process -FilePath 'msiexec.exe' -ArgumentList $arguments -Wait -PassThru
  # 3010: installed, a reboot completes it.
  if ($process.ExitCode -ne 0 -and $process.ExitCode -ne 3010) {
    throw "msiexec failed with exit code $($process.ExitCode); its log is $log"
  }
}

# Only administrators and SYSTEM may read the config: it holds the private key.
function Write-PrivateFile([string]$path, [string]$text) {
  $dir = Split-Path -Parent $path
  New-Item -ItemType Directory -Force -Path $dir | Out-Null
  [IO.File]::WriteAllText($path, $text, (New-Object Text.UTF8Encoding($false)))
  & icacls.exe $path /inheritance:r /grant:r '*S-1-5-18:F' '*S-1-5-32-544:F' | Out-Null
  if ($LASTEXITCODE -ne 0) { throw "icacls could not restrict $path" }
}
`;
}

/** Interface metric the tunnel gets with multicast on: below a LAN or cloud NIC's automatic metric (≥ 5). */
export const WINDOWS_TUNNEL_METRIC = 5;
/** Seconds a Windows pack waits for the tunnel to hold the member's address before giving up on the metric. */
const WINDOWS_TUNNEL_WAIT_S = 60;

/**
 * Multicast on Windows: Windows sends a datagram to a group out of the interface whose route to it has the
 * lowest metric (route metric + interface metric), usually the LAN or cloud NIC, not the tunnel. Once the
 * tunnel's adapter holds the member's address (the adapter's name differs between clients: found by the
 * address), lower its interface metric and route the groups through it with route metric 1.
 */
function psMulticast(multicast: ClientPackInput['multicast']): string {
  if (multicast === undefined) return '';
  const steps = [
    { family: 'IPv4', address: multicast.address4, prefix: '224.0.0.0/4' },
    ...(multicast.address6 !== null
      ? [{ family: 'IPv6', address: multicast.address6, prefix: 'ff00::/8' }]
      : []),
  ];
  return `
# Multicast: send to groups through the tunnel, not the LAN NIC (lowest metric wins for 224.0.0.0/4, ff00::/8).
function Set-WeftMulticastRoute([string]$family, [string]$address, [string]$prefix) {
  $deadline = (Get-Date).AddSeconds(${WINDOWS_TUNNEL_WAIT_S})
  $ip = $null
  while ($null -eq $ip -and (Get-Date) -lt $deadline) {
    $ip = Get-NetIPAddress -IPAddress $address -ErrorAction SilentlyContinue | Select-Object -First 1
    if ($null -eq $ip) { Start-Sleep -Seconds 2 }
  }
  if ($null -eq $ip) {
    Write-Warning "Weft: the tunnel did not get $address within ${WINDOWS_TUNNEL_WAIT_S} s; multicast $prefix not routed into it (run this script again once it is up)"
    return
  }
  $index = $ip.InterfaceIndex
  Set-NetIPInterface -InterfaceIndex $index -AddressFamily $family -InterfaceMetric ${WINDOWS_TUNNEL_METRIC}
  $route = Get-NetRoute -DestinationPrefix $prefix -InterfaceIndex $index -ErrorAction SilentlyContinue
  if ($null -ne $route) { $route | Set-NetRoute -RouteMetric 1 }
  else { New-NetRoute -DestinationPrefix $prefix -InterfaceIndex $index -RouteMetric 1 | Out-Null }
  Write-Host "Weft: multicast $prefix goes through the tunnel (interface $index, metric ${WINDOWS_TUNNEL_METRIC}, route metric 1)."
}
${steps.map((x) => `Set-WeftMulticastRoute ${psQuote(x.family)} ${psQuote(x.address)} ${psQuote(x.prefix)}`).join('\n')}
`;
}

function windowsOpenVpn(
  memberName: string,
  config: string,
  multicast?: ClientPackInput['multicast'],
): string {
  return `${psHead(memberName, 'OpenVPN', DEFAULT_OPENVPN_MSI_URL, 'OpenVPN-*.msi')}
${psConfig(config)}

$openvpnHome = Join-Path $env:ProgramFiles 'OpenVPN'
if (-not (Test-Path -LiteralPath (Join-Path $openvpnHome 'bin\\openvpn.exe'))) {
  $path = Get-Msi
  Assert-Sha256 $path
  # OpenVPN 2.5/2.6 MSIs: the Wintun driver; 2.7 MSIs have no Wintun feature and take the DCO driver.
  $drivers = 'Drivers.Wintun'
  if ([IO.Path]::GetFileName($path) -match '^OpenVPN-2\\.(\\d+)\\.' -and [int]$Matches[1] -ge 7) {
    $drivers = 'Drivers.OvpnDco'
  }
  Install-Msi $path @("ADDLOCAL=OpenVPN.Service,OpenVPN,Drivers,$drivers")
}

# The OpenVPN service (OpenVPNService) starts every profile in config-auto at boot.
$profilePath = Join-Path $openvpnHome 'config-auto\\weft.ovpn'
Write-PrivateFile $profilePath $config
Set-Service -Name 'OpenVPNService' -StartupType Automatic
Restart-Service -Name 'OpenVPNService' -Force
Write-Host "Weft: OpenVPN profile of $memberName installed in $profilePath; the OpenVPNService service connects it at boot."
${psMulticast(multicast)}`;
}

function windowsWireGuard(
  memberName: string,
  config: string,
  multicast?: ClientPackInput['multicast'],
): string {
  return `${psHead(memberName, 'WireGuard', DEFAULT_WIREGUARD_MSI_URL, 'wireguard-*.msi')}
${psConfig(config)}

$wireguard = Join-Path $env:ProgramFiles 'WireGuard\\wireguard.exe'
if (-not (Test-Path -LiteralPath $wireguard)) {
  $path = Get-Msi
  Assert-Sha256 $path
  # DO_NOT_LAUNCH: no window after installing; the tunnel runs as a service below.
  Install-Msi $path @('DO_NOT_LAUNCH=1')
}

# The tunnel service is named after the file: WireGuardTunnel$${TUNNEL}, started now and at boot.
$configPath = Join-Path $env:ProgramData 'Weft\\${TUNNEL}.conf'
Write-PrivateFile $configPath $config
if (Get-Service -Name 'WireGuardTunnel$${TUNNEL}' -ErrorAction SilentlyContinue) {
  & $wireguard /uninstalltunnelservice ${TUNNEL}
  Start-Sleep -Seconds 2
}
& $wireguard /installtunnelservice $configPath
Write-Host "Weft: WireGuard tunnel of $memberName installed from $configPath; it connects at boot."
${psMulticast(multicast)}`;
}

// ---------------------------------------------------------------------------------------------------------
// Linux and macOS (POSIX sh)

function shHead(memberName: string, what: string, osName: string, root: boolean): string {
  const runAs = root ? 'sudo sh' : 'sh';
  return `#!/bin/sh
# Weft client pack: ${what} for member ${memberName} (${osName}).
# Run it: ${runAs} ./weft-${memberName}-*.sh
# It holds the member's private key: delete it once the tunnel is up.
set -eu
member=${shQuote(memberName)}
umask 077
`;
}

const NEED_ROOT = `if [ "$(id -u)" -ne 0 ]; then
  echo "weft: run this script as root (sudo sh $0)" >&2
  exit 1
fi
`;

function installPackage(packages: string): string {
  return `if command -v apt-get >/dev/null 2>&1; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y ${packages}
  elif command -v dnf >/dev/null 2>&1; then
    dnf install -y ${packages}
  else
    echo "weft: install ${packages} with this system's package manager, then run this script again" >&2
    exit 1
  fi`;
}

function linuxOpenVpn(memberName: string, config: string): string {
  const h = heredoc(config);
  return `${shHead(memberName, 'OpenVPN', 'Linux, systemd', true)}${NEED_ROOT}
if ! command -v openvpn >/dev/null 2>&1; then
  ${installPackage('openvpn')}
fi

# openvpn-client@${TUNNEL}.service reads /etc/openvpn/client/${TUNNEL}.conf.
mkdir -p /etc/openvpn/client
cat > /etc/openvpn/client/${TUNNEL}.conf ${h.start}
${config}${h.end}
chmod 600 /etc/openvpn/client/${TUNNEL}.conf
systemctl enable openvpn-client@${TUNNEL}.service
systemctl restart openvpn-client@${TUNNEL}.service
echo "weft: OpenVPN profile of $member installed; openvpn-client@${TUNNEL} connects now and at boot"
`;
}

function linuxWireGuard(memberName: string, config: string): string {
  const h = heredoc(config);
  // wg-quick hands a DNS line to resolvconf; without one it fails to bring the tunnel up.
  const dns = /^DNS\s*=/m.test(config)
    ? `if ! command -v resolvconf >/dev/null 2>&1; then
  ${installPackage('openresolv')}
fi
`
    : '';
  return `${shHead(memberName, 'WireGuard', 'Linux, systemd', true)}${NEED_ROOT}
if ! command -v wg-quick >/dev/null 2>&1; then
  ${installPackage('wireguard-tools')}
fi
${dns}
mkdir -p /etc/wireguard
cat > /etc/wireguard/${TUNNEL}.conf ${h.start}
${config}${h.end}
chmod 600 /etc/wireguard/${TUNNEL}.conf
systemctl enable wg-quick@${TUNNEL}.service
systemctl restart wg-quick@${TUNNEL}.service
echo "weft: WireGuard config of $member installed; wg-quick@${TUNNEL} connects now and at boot"
`;
}

const NEED_BREW = `if [ "$(id -u)" -eq 0 ]; then
  echo "weft: run this script as yourself, not root (Homebrew refuses root; sudo is asked for when needed)" >&2
  exit 1
fi
if ! command -v brew >/dev/null 2>&1; then
  echo "weft: install Homebrew first (https://brew.sh), then run this script again" >&2
  exit 1
fi
`;

function macosOpenVpn(memberName: string, config: string): string {
  const h = heredoc(config);
  return `${shHead(memberName, 'OpenVPN with Tunnelblick', 'macOS', false)}${NEED_BREW}
if [ ! -d /Applications/Tunnelblick.app ]; then
  brew install --cask tunnelblick
fi

# Tunnelblick installs a profile it is asked to open (it asks for the administrator password once), then
# offers to connect it; "Connect when computer starts" in its settings keeps it up across reboots.
dir=$(mktemp -d)
profile="$dir/${TUNNEL}.ovpn"
cat > "$profile" ${h.start}
${config}${h.end}
chmod 600 "$profile"
open -a Tunnelblick "$profile"
echo "weft: Tunnelblick is installing the profile of $member from $profile; delete $dir afterwards"
`;
}

function macosWireGuard(memberName: string, config: string): string {
  const h = heredoc(config);
  return `${shHead(memberName, 'WireGuard (wireguard-go, wg-quick)', 'macOS', false)}${NEED_BREW}
if ! command -v wg-quick >/dev/null 2>&1; then
  brew install wireguard-tools wireguard-go
fi

# The config goes under Homebrew's etc; wg-quick is given its path (the tunnel is named after the file).
dir="$(brew --prefix)/etc/wireguard"
conf="$dir/${TUNNEL}.conf"
sudo mkdir -p "$dir"
sudo sh -c 'umask 077; cat > "$1"' sh "$conf" ${h.start}
${config}${h.end}
sudo chmod 600 "$conf"
sudo wg-quick down "$conf" >/dev/null 2>&1 || true
sudo wg-quick up "$conf"
echo "weft: WireGuard tunnel of $member is up (sudo wg-quick down $conf stops it)"
`;
}
