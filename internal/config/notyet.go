package config

// notSupportedYet refuses keys whose behaviour is not built yet, so a config
// never silently means something the binary does not do. Entries are removed
// as the features land.
func (d *decoder) notSupportedYet(f *File) {
	if len(f.VRRP.Instances) > 0 {
		d.errAt(f.VRRP.KeyPos("instances"), "vrrp is not supported yet")
	}
	if f.Synflood.Enabled {
		d.errAt(f.Synflood.KeyPos("enabled"), "synflood is not supported yet")
	}
}
