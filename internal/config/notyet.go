package config

// notSupportedYet refuses keys whose behaviour is not built yet, so a config
// never silently means something the binary does not do. Entries are removed
// as the features land.
func (d *decoder) notSupportedYet(f *File) {
	for i := range f.Frontends {
		fe := &f.Frontends[i]
		if fe.Mode == "http" {
			d.errAt(fe.KeyPos("mode"), "mode http is not supported yet")
		}
	}
	if len(f.VRRP.Instances) > 0 {
		d.errAt(f.VRRP.KeyPos("instances"), "vrrp is not supported yet")
	}
	if f.Synflood.Enabled {
		d.errAt(f.Synflood.KeyPos("enabled"), "synflood is not supported yet")
	}
}
