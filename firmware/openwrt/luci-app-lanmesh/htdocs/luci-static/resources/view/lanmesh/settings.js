'use strict';
'require view';
'require form';
'require uci';

// Settings of /etc/config/lanmesh. "Save & Apply" commits the config and
// procd reloads the agent with SIGHUP: the join block applies without
// dropping tunnels (docs/openwrt.md).
return view.extend({
	load: function() {
		return uci.load('network');
	},

	render: function() {
		var m, s, o;

		m = new form.Map('lanmesh', _('lanmesh'),
			_('Join this router and its LAN to a private WireGuard mesh.'));

		s = m.section(form.NamedSection, 'main', 'agent', _('Agent'));
		s.addremove = false;

		o = s.option(form.Flag, 'enabled', _('Enabled'), _('Start the agent at boot.'));
		o.default = o.enabled;
		o.rmempty = false;

		o = s.option(form.Value, 'listen_port', _('WireGuard port'),
			_('UDP port; the firewall rule Allow-lanmesh-WireGuard opens 41641 on wan.'));
		o.datatype = 'port';
		o.placeholder = '41641';

		o = s.option(form.ListValue, 'backend', _('WireGuard'),
			_('auto: the kernel\'s WireGuard when kmod-wireguard is installed, else userspace.'));
		o.value('auto', _('auto'));
		o.value('kernel', _('kernel (kmod-wireguard)'));
		o.value('userspace', _('userspace'));
		o.default = 'auto';

		o = s.option(form.ListValue, 'log_level', _('Log level'));
		o.value('error');
		o.value('warn');
		o.value('info');
		o.value('debug');
		o.default = 'warn';

		s = m.section(form.NamedSection, 'join', 'join', _('Mesh'));
		s.addremove = false;

		o = s.option(form.Value, 'login_server', _('Login server'),
			_('The coord URL, e.g. https://coord.example.net. Empty: join with "lanmesh up".'));
		o.placeholder = 'https://coord.example.net';
		o.validate = function(section_id, value) {
			if (value === '' || /^https:\/\/[^\s]+$/.test(value))
				return true;
			return _('Must be an https:// URL');
		};

		o = s.option(form.Value, 'auth_key_file', _('Auth key file'),
			_('A file holding a pre-auth key (lanmesh-coord keys create); read only until the router has joined.'));
		o.placeholder = '/etc/lanmesh/authkey';

		o = s.option(form.Value, 'hostname', _('Name in the mesh'),
			_('Empty: the system host name.'));
		o.datatype = 'hostname';

		o = s.option(form.DynamicList, 'advertise_routes', _('Advertise'),
			_('Networks (e.g. lan) or prefixes this router offers to the mesh; an admin approves them on coord.'));
		uci.sections('network', 'interface', function(iface) {
			if (iface['.name'] !== 'loopback')
				o.value(iface['.name']);
		});

		o = s.option(form.Flag, 'accept_routes', _('Accept routes'),
			_('Reach the LANs other routers advertise.'));
		o.default = o.enabled;

		o = s.option(form.Flag, 'snat_subnet_routes', _('Masquerade into LAN'),
			_('Mesh traffic into the advertised LANs leaves with the router\'s address, so LAN hosts need no route back.'));
		o.default = o.enabled;

		o = s.option(form.Flag, 'advertise_exit_node', _('Offer exit node'),
			_('Let peers send their internet traffic through this router; an admin approves 0.0.0.0/0 and ::/0 on coord.'));
		o.default = o.disabled;

		o = s.option(form.Value, 'exit_node', _('Use exit node'),
			_('Send the internet traffic of this router and its LAN through this peer (name or mesh IP; "lanmesh exit-node list"). Empty: none.'));
		o.datatype = 'or(hostname,ipaddr)';
		o.depends('advertise_exit_node', '0');

		o = s.option(form.Flag, 'exit_node_allow_lan_access', _('Keep LAN outside the exit node'),
			_('The router\'s own LANs stay reachable directly while an exit node is in use.'));
		o.default = o.enabled;
		o.depends('advertise_exit_node', '0');

		s = m.section(form.NamedSection, 'dns', 'dns', _('DNS'));
		s.addremove = false;

		o = s.option(form.Flag, 'enabled', _('Mesh DNS'),
			_('Answer mesh names; dnsmasq forwards the mesh domain to the agent.'));
		o.default = o.enabled;

		o = s.option(form.Flag, 'publish_leases', _('Publish DHCP names'),
			_('Let permitted peers resolve the names of this LAN\'s DHCP clients.'));
		o.default = o.enabled;

		s = m.section(form.NamedSection, 'web', 'web', _('Web page'),
			_('The agent\'s own status page on the LAN, behind the token in /etc/lanmesh/web.token.'));
		s.addremove = false;

		o = s.option(form.Flag, 'enabled', _('Enabled'),
			_('Takes effect after a restart of the agent.'));
		o.default = o.disabled;

		o = s.option(form.Value, 'listen', _('Listen on'),
			_('The router\'s LAN address and a port, e.g. 192.168.1.1:8081.'));
		o.datatype = 'ipaddrport(1)';
		o.placeholder = '192.168.1.1:8081';
		o.depends('enabled', '1');

		return m.render();
	}
});
