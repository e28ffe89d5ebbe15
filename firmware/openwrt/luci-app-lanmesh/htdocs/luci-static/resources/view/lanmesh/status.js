'use strict';
'require view';
'require fs';
'require poll';
'require ui';

// Status of the agent from "lanmesh status --json" (the fields are listed
// in docs/cli.md), read through the rpcd ACL of luci-app-lanmesh.

function loadStatus() {
	return fs.exec('/usr/sbin/lanmesh', [ 'status', '--json' ]).then(function(res) {
		if (res.code !== 0)
			throw new Error((res.stderr || res.stdout || '').trim() || _('lanmesh status failed'));
		return JSON.parse(res.stdout);
	});
}

function text(v) {
	if (v === null || v === undefined || v === '')
		return '-';
	if (Array.isArray(v))
		return v.length ? v.join(', ') : '-';
	return String(v);
}

function bytes(n) {
	var units = [ 'B', 'KiB', 'MiB', 'GiB', 'TiB' ], i = 0;
	n = +n || 0;
	while (n >= 1024 && i < units.length - 1) {
		n /= 1024;
		i++;
	}
	return (i ? n.toFixed(1) : n) + ' ' + units[i];
}

function renderStatus(st) {
	var self = st.self || {};
	var coord = st.coord || {};
	var dns = st.dns || {};
	var info = E('table', { 'class': 'table', 'id': 'lanmesh-self' }, [
		E('tr', { 'class': 'tr' }, [ E('td', { 'class': 'td left', 'width': '33%' }, _('State')), E('td', { 'class': 'td left' }, text(st.backend_state)) ]),
		E('tr', { 'class': 'tr' }, [ E('td', { 'class': 'td left' }, _('Name')), E('td', { 'class': 'td left' }, text(self.name)) ]),
		E('tr', { 'class': 'tr' }, [ E('td', { 'class': 'td left' }, _('Mesh addresses')), E('td', { 'class': 'td left' }, text(self.addresses)) ]),
		E('tr', { 'class': 'tr' }, [ E('td', { 'class': 'td left' }, _('Advertised / approved')), E('td', { 'class': 'td left' }, text(self.advertised_routes) + ' / ' + text(self.routes)) ]),
		E('tr', { 'class': 'tr' }, [ E('td', { 'class': 'td left' }, _('Coord')), E('td', { 'class': 'td left' }, text(coord.url) + (coord.connected ? ' (' + _('connected') + ')' : coord.last_error ? ' (' + coord.last_error + ')' : '')) ]),
		E('tr', { 'class': 'tr' }, [ E('td', { 'class': 'td left' }, _('Mesh DNS')), E('td', { 'class': 'td left' }, dns.enabled ? text(dns.domain) + ' @ ' + text(dns.listen) : _('off')) ])
	]);

	var rows = (st.peers || []).map(function(p) {
		return [
			p.name,
			text(p.addresses),
			text(p.routes),
			p.online ? text(p.path) : _('offline'),
			text(p.last_handshake),
			bytes(p.rx_bytes) + ' / ' + bytes(p.tx_bytes)
		];
	});
	var peers = E('table', { 'class': 'table', 'id': 'lanmesh-peers' }, [
		E('tr', { 'class': 'tr table-titles' }, [
			E('th', { 'class': 'th' }, _('Peer')),
			E('th', { 'class': 'th' }, _('Addresses')),
			E('th', { 'class': 'th' }, _('Routes')),
			E('th', { 'class': 'th' }, _('Path')),
			E('th', { 'class': 'th' }, _('Last handshake')),
			E('th', { 'class': 'th' }, _('Received / sent'))
		])
	]);
	cbi_update_table(peers, rows, E('em', _('No peers yet.')));

	return E('div', { 'id': 'lanmesh-status' }, [
		E('h3', _('This router')), info,
		E('h3', _('Peers')), peers
	]);
}

return view.extend({
	load: function() {
		return loadStatus().catch(function(err) { return { error: err.message }; });
	},

	render: function(st) {
		var root = E('div', { 'class': 'cbi-map' }, [
			E('h2', _('lanmesh')),
			E('div', { 'id': 'lanmesh-body' })
		]);
		var body = root.querySelector('#lanmesh-body');
		var show = function(s) {
			var content = s.error
				? E('p', { 'class': 'alert-message warning' }, _('The agent does not answer: %s').format(s.error))
				: renderStatus(s);
			body.replaceChildren(content);
		};
		show(st);
		poll.add(function() {
			return loadStatus().then(show, function(err) { show({ error: err.message }); });
		}, 5);
		return root;
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
